"""The VM harness proves itself: IPVS, dummy, iptables-restore, ipset, nft and the checkout's
python work in the guest.  All checks share ONE boot (guest_selftest.sh records evidence in
an output dir; the tests below judge it), because userland is 20-50x slower under TCG."""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .harness import RC_TIMEOUT, VmResult, VmRunner, run_in_vm

pytestmark = [pytest.mark.vm, pytest.mark.root]

HERE = Path(__file__).resolve().parent
SCHEDULERS = ("wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")
GUEST_EXIT = 3  # guest_selftest.sh ends with `exit 3`


def ipvs_rules() -> str:
    """One service per scheduler (besides rr): loading them proves every scheduler module."""
    lines = []
    for port, sched in enumerate(SCHEDULERS, start=1001):
        lines.append(f"-A -t 10.96.0.20:{port} -s {sched}")
        lines.append(f"-a -t 10.96.0.20:{port} -r 10.244.1.2:80 -m -w 1")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Evidence:
    result: VmResult
    out: Path
    token: str

    def __getitem__(self, name: str) -> str:
        path = self.out / name
        assert path.is_file(), f"the guest left no {name}\n{self.result.describe()}"
        return path.read_text()

    def rc(self, name: str) -> int:
        return int(self[f"{name}.rc"])

    def context(self) -> str:
        return self.result.describe()


@pytest.fixture(scope="module")
def selftest(ipvs_vm: VmRunner, tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    out = tmp_path_factory.mktemp("vm-selftest")
    token = secrets.token_hex(8)
    res = ipvs_vm.run(
        (HERE / "guest_selftest.sh").read_text(),
        files={
            "ipvs.rules": ipvs_rules().encode(),
            "guest_pyroute2.py": (HERE / "guest_pyroute2.py").read_bytes(),
        },
        env={"SELFTEST_TOKEN": token},
        out_dir=out,
        timeout=900,
    )
    if res.error is not None:
        pytest.fail(f"the self-test VM run failed\n{res.describe()}", pytrace=False)
    return Evidence(res, out, token)


def test_exit_status_env_files_and_out_dir_reach_across(selftest: Evidence) -> None:
    assert selftest.result.rc == GUEST_EXIT, selftest.context()
    assert selftest["token"].strip() == selftest.token
    assert selftest.rc("ipvsadm-restore") == 0, selftest["ipvsadm-restore"]  # read /job/ipvs.rules


def test_guest_runs_debian_kernel(selftest: Evidence, ipvs_vm: VmRunner) -> None:
    release = selftest["kernel-release"].strip()
    assert release == ipvs_vm.image.kernel_release
    assert release != os.uname().release


def test_dummy_interface(selftest: Evidence) -> None:
    assert selftest.rc("dummy") == 0, selftest["dummy"]
    # `ip -d link` names the link kind on its own line
    assert re.search(r"^\s+dummy\b", selftest["dummy"], re.M), selftest["dummy"]


def test_ipvsadm_save_reads_back_what_was_loaded(selftest: Evidence) -> None:
    assert selftest.rc("ipvsadm-add") == 0, selftest["ipvsadm-add"]
    saved = selftest["ipvsadm-save-1"].splitlines()
    expected = [
        "-A -t 10.96.0.10:80 -s rr",
        "-a -t 10.96.0.10:80 -r 10.244.1.2:80 -m -w 1",
        "-a -t 10.96.0.10:80 -r 10.244.2.2:80 -m -w 1",
        *ipvs_rules().splitlines(),
    ]
    assert sorted(saved) == sorted(expected)


def test_ipvs_rr_alternates_real_tcp_connections(selftest: Evidence) -> None:
    answers = selftest["rr"].split()
    assert len(answers) == 6 and set(answers) == {"rs1", "rs2"}, selftest.context()
    assert all(a != b for a, b in itertools.pairwise(answers)), answers


def test_nft_table_counts_the_traffic(selftest: Evidence) -> None:
    assert selftest.rc("nft-load") == 0, selftest["nft-load"]
    m = re.search(r"ip daddr @vips tcp dport 80 counter packets (\d+)", selftest["nft-list"])
    assert m, selftest["nft-list"]
    assert int(m.group(1)) >= 6  # at least the six SYNs of the rr test


def test_iptables_restore_rules_take_effect(selftest: Evidence) -> None:
    assert selftest.rc("iptables-restore") == 0, selftest["iptables-restore"]
    saved = selftest["iptables-save"]
    assert ":SVC2RULES-SELFTEST - [0:0]" in saved
    assert "-A SVC2RULES-SELFTEST -p tcp -m tcp -j DNAT --to-destination 10.244.2.2:80" in saved
    assert selftest["dnat"].split() == ["rs2"] * 3, selftest.context()


def test_fallback_tools_of_the_vm_work_in_host_mode(selftest: Evidence) -> None:
    # what a host without ipvsadm/iptables would get: the VM's own binaries and libraries
    assert selftest["fallback-ipvsadm-save"] == selftest["ipvsadm-save-2"]
    assert "-A SVC2RULES-SELFTEST -p tcp -m tcp" in selftest["fallback-iptables-save"]


def test_ipset_restore_and_match(selftest: Evidence) -> None:
    assert selftest.rc("ipset-restore") == 0, selftest["ipset-restore"]
    assert "add svc2rules-selftest 10.244.1.2,tcp:80" in selftest["ipset-save"].splitlines()
    assert selftest.rc("ipset-rule") == 0, selftest["ipset-rule"]
    effect = dict(line.split(" ", 1) for line in selftest["ipset-effect"].splitlines())
    assert "refused" in effect["10.244.1.2"], effect  # REJECTed: it is in the set
    assert effect["10.244.2.2"] == "rs2", effect


def _python_result(selftest: Evidence) -> dict[str, Any]:
    assert selftest.rc("python") == 0, selftest["python"]
    data = json.loads(selftest["python.json"])
    assert isinstance(data, dict)
    return data


def test_checkout_venv_python_runs_in_the_guest(selftest: Evidence, ipvs_vm: VmRunner) -> None:
    data = _python_result(selftest)
    host_prefix = subprocess.run(
        [str(ipvs_vm.python), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert data["prefix"] == host_prefix
    assert Path(data["svc2rules"]).is_relative_to(ipvs_vm.checkout)


def test_pyroute2_drives_ipvs(selftest: Evidence) -> None:
    data = _python_result(selftest)
    if data["pyroute2"] is None:
        pytest.skip(f"pyroute2 is not installed in the checkout's venv: {data.get('pyroute2_error')}")
    assert ["10.96.0.10", 80, "rr"] in data["dump"]  # made by ipvsadm, seen by pyroute2
    saved = selftest["ipvsadm-save-2"].splitlines()  # made by pyroute2, seen by ipvsadm
    assert "-A -t 10.96.0.30:8080 -s rr" in saved
    assert "-a -t 10.96.0.30:8080 -r 10.244.1.2:80 -m -w 3" in saved


def test_timeout_kills_the_vm(ipvs_vm: VmRunner) -> None:
    # shorter than a boot, so this costs ~2 s, not a whole run
    res = run_in_vm("sleep 600", image=ipvs_vm.image, timeout=2)
    assert res.rc == RC_TIMEOUT and res.error and "timeout" in res.error
    # Killed at its timeout, not when the guest's `sleep 600` (or the default 300 s timeout) ended:
    # the bound is far below those and far above what starting QEMU takes on a busy host.
    assert res.duration < 120


INITRAMFS_SCRIPT = """\
set -e
ipvsadm -A -t 10.96.0.10:80 -s wrr
ipvsadm -a -t 10.96.0.10:80 -r 10.244.1.2:80 -m -w 2
ipvsadm-save -n
printf 'create s1 hash:ip\\nadd s1 10.0.0.1\\n' | ipset restore
ipset save s1
printf '*nat\\n:X - [0:0]\\n-A OUTPUT -p tcp -j X\\nCOMMIT\\n' | iptables-restore
iptables-save -t nat
nft add table ip t1
nft list tables
ip link add d0 type dummy
ip -d link show d0
echo "mode=$SVC2RULES_VM_MODE"
"""


def test_initramfs_mode_has_its_own_tools(ipvs_vm: VmRunner) -> None:
    """host_root=False: nothing of the host, only the tools unpacked from the .debs."""
    res = ipvs_vm.run(INITRAMFS_SCRIPT, host_root=False, modules=[]).check()
    lines = res.stdout.splitlines()
    assert "-a -t 10.96.0.10:80 -r 10.244.1.2:80 -m -w 2" in lines  # ip_vs + ip_vs_wrr autoloaded
    assert "add s1 10.0.0.1" in lines
    assert "-A OUTPUT -p tcp -j X" in lines
    assert "table ip t1" in lines
    assert any(re.match(r"\s+dummy\b", line) for line in lines)
    assert "mode=initramfs" in lines
