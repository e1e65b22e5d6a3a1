"""The iptables applier owns its own chains only, not every chain under our prefix.

The ipvs and userspace backends keep companion chains under the same `SVC2R-` prefix;
applying or cleaning up the iptables backend must leave them exactly as they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Host, small_cluster

pytestmark = pytest.mark.root

NEIGHBOURS = """*nat
:SVC2R-IPVS-SERVICES - [0:0]
:SVC2R-USERSPACE-PORTALS - [0:0]
-A SVC2R-IPVS-SERVICES -s 127.0.0.0/8 -j RETURN
-A SVC2R-USERSPACE-PORTALS -d 172.30.9.9/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 20001
-A PREROUTING -j SVC2R-USERSPACE-PORTALS
COMMIT
*filter
:SVC2R-IPVS-FILTER - [0:0]
-A SVC2R-IPVS-FILTER -d 172.30.9.9/32 -j ACCEPT
-A INPUT -j SVC2R-IPVS-FILTER
COMMIT
"""


def neighbour_lines(host: Host) -> list[str]:
    return [
        line
        for table in ("nat", "filter")
        for line in host.save(table).splitlines()
        if "SVC2R-IPVS-" in line or "SVC2R-USERSPACE-" in line
    ]


def test_iptables_apply_and_cleanup_leave_other_backends_chains_alone(host: Host, manifests: Path) -> None:
    host.run(["iptables-restore", "-w", "--noflush"], stdin=NEIGHBOURS)
    before = neighbour_lines(host)
    assert len(before) == 8, before
    cluster = manifests / "cluster.yaml"
    cluster.write_text(small_cluster())
    proc = host.cli("apply", "-f", str(cluster), backend="iptables")
    assert proc.returncode == 0, proc.stderr
    assert neighbour_lines(host) == before
    assert host.cli("apply", "-f", str(cluster), "--resync", backend="iptables").returncode == 0
    assert neighbour_lines(host) == before
    proc = host.cli("cleanup", backend="iptables")
    assert proc.returncode == 0, proc.stderr
    assert neighbour_lines(host) == before
    assert "SVC2R-SERVICES" not in host.save("nat")
