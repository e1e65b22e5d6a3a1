"""Sysctls are a side effect of a successful apply only: a refused ruleset leaves them as they
were, and a load the kernel refuses puts back the ones it had set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import Host, small_cluster

pytestmark = pytest.mark.root

DRIVER = str(Path(__file__).with_name("refusal_driver.py"))
ROOT = str(Path(__file__).resolve().parents[2])
WATCHED = ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet")


def sysctls(host: Host) -> dict[str, str]:
    return {name: host.run(["sysctl", "-n", name]).stdout.strip() for name in WATCHED}


def switched_off(host: Host) -> dict[str, str]:
    for name in WATCHED:
        host.run(["sysctl", "-q", "-w", f"{name}=0"])
    before = sysctls(host)
    assert set(before.values()) == {"0"}
    return before


def test_a_ruleset_the_kernel_would_refuse_sets_no_sysctl(host: Host, manifests: Path) -> None:
    before = switched_off(host)
    path = manifests / "cluster.yaml"
    path.write_text(small_cluster())
    # One rule broken in the planned write: validation (iptables-restore --test) refuses it.
    argv = ["env", f"PYTHONPATH={ROOT}", sys.executable, DRIVER, "iptables", str(path)]
    argv += [str(host.state_dir), "--to-destination 10.180.0.1:8080", "--to-destination 10.180.0.1:99999"]
    proc = host.run([*argv, "no"], check=False)
    assert proc.returncode == 1 and "refused" in proc.stdout, proc.stdout + proc.stderr
    assert sysctls(host) == before
    assert "SVC2R" not in host.ruleset()


def test_a_load_the_kernel_refuses_puts_the_sysctls_back(host: Host, manifests: Path) -> None:
    before = switched_off(host)
    path = manifests / "cluster.yaml"
    path.write_text(small_cluster())
    # Validation skipped and one element broken: the first (full) load itself is refused.
    argv = ["env", f"PYTHONPATH={ROOT}", sys.executable, DRIVER, "nftables", str(path)]
    argv += [str(host.state_dir), ": 10.180.0.1 . 8080", ": 10.180.0.1 . 99999", "yes"]
    proc = host.run(argv, check=False)
    assert proc.returncode == 1 and "kernel refused" in proc.stdout, proc.stdout + proc.stderr
    assert sysctls(host) == before
    # The same input, unbroken, goes through and sets what the rules need.
    assert host.cli("apply", "-f", str(path), backend="nftables").returncode == 0
    assert sysctls(host)["net.ipv4.ip_forward"] == "1"
