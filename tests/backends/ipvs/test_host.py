"""The ipset and iptables sections on this machine's kernel (it has no IPVS: that part is
test_vm.py's): they load as printed, and the applier reads them back as what it compiled,
so a second apply would write nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .helpers import service, slice_

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: ipset and iptables in a private network namespace"
    ),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("ipset", "iptables-restore", "unshare")),
        reason="needs ipset, iptables-restore and unshare",
    ),
]

# Every kind of set entry, but no LoadBalancer the node may not reach: that rule needs the
# kernel's IPVS match (`-m ipvs`), which this kernel lacks.
OBJECTS: list[dict[str, Any]] = [
    service(
        "lb",
        "172.30.0.10",
        type="LoadBalancer",
        externalIPs=["192.168.99.1"],
        status_ips=("1.2.3.4",),
        loadBalancerSourceRanges=["192.168.0.0/24", "10.1.2.3/32"],
        externalTrafficPolicy="Local",
        node_port=30080,
        healthCheckNodePort=32000,
    ),
    slice_("lb", [("10.180.0.1", "node1"), ("10.180.0.2", "node2")]),
    service("dns", "172.30.0.53", port=53, target=53, protocol="UDP", type="NodePort", node_port=30053),
    slice_("dns", [("10.180.0.3", "node1")], port=53, protocol="UDP"),
    service("sctp", "172.30.0.9", port=9, target=9, protocol="SCTP", type="NodePort", node_port=30009),
]


@pytest.fixture(scope="module")
def checked() -> dict[str, Any]:
    script = Path(__file__).with_name("netns_check.py")
    proc = subprocess.run(
        ["unshare", "--net", "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_the_ipset_and_iptables_sections_load_as_printed(checked: dict[str, Any]) -> None:
    assert checked["ipset_rc"] == 0, checked["ipset_err"]
    assert checked["iptables_rc"] == 0, checked["iptables_err"]


def test_what_the_kernel_reads_back_is_what_was_compiled(checked: dict[str, Any]) -> None:
    assert checked["tables_match"]
    # Nothing but IPVS (absent here) and apply's own record of it would be written again.
    changed = [line for step in checked["ipset_steps"] for line in step.splitlines()[1:-1]]
    assert changed and all(" SVC2R-IPVS-OWNED " in line for line in changed), changed
    assert not [s for s in checked["steps"] if s.startswith("IptablesRestore") and "marker" not in s]


def test_cleanup_removes_every_chain_and_jump_of_ours(checked: dict[str, Any]) -> None:
    assert checked["removal_rc"] == 0
    assert checked["left_after_removal"] == {"nat": [], "filter": [], "jumps": {"nat": [], "filter": []}}
