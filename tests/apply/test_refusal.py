"""A write the kernel refuses: the host keeps exactly its previous rules, and the error names
the kernel's message, the offending line and the Service it came from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import Host, small_cluster

pytestmark = pytest.mark.root

DRIVER = str(Path(__file__).with_name("refusal_driver.py"))
ROOT = str(Path(__file__).resolve().parents[2])

CASES = {
    # (backend, text in the planned write, replacement, skip validation, expected in the message)
    "iptables-test-refuses": (
        "iptables",
        "--to-destination 10.180.0.3:8080",
        "--to-destination 10.180.0.3:99999",
        "no",
        "iptables-restore --test refused",
    ),
    "iptables-missing-chain-caught-before-the-kernel": (
        "iptables",
        "-j SVC2R-MARK-MASQ",
        "-j SVC2R-SEP-NOSUCHCHAIN0000",
        "no",
        "does not exist",
    ),
    "iptables-kernel-refuses-at-load": (
        "iptables",
        "-j SVC2R-MARK-MASQ",
        "-j SVC2R-SEP-NOSUCHCHAIN0000",
        "yes",
        "kernel refused",
    ),
    "nftables-check-refuses": (
        "nftables",
        ": 10.180.0.3 . 8080",
        ": 10.180.0.3 . 99999",
        "no",
        "nft -c refused",
    ),
    "nftables-kernel-refuses-at-load": (
        "nftables",
        ": 10.180.0.3 . 8080",
        ": 10.180.0.3 . 99999",
        "yes",
        "kernel refused",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_refused_write_changes_nothing_and_names_line_and_service(
    host: Host, manifests: Path, case: str
) -> None:
    backend, old, new, skip, expected = CASES[case]
    first = manifests / "first.yaml"
    first.write_text(small_cluster())
    assert host.cli("apply", "-f", str(first), backend=backend).returncode == 0
    before = host.ours(backend)
    whole = host.run(["nft", "list", "ruleset"]).stdout
    changed = manifests / "changed.yaml"
    changed.write_text(small_cluster(endpoints=("10.180.0.1", "10.180.0.3")))

    proc = host.run(
        [
            "env",
            f"PYTHONPATH={ROOT}",
            sys.executable,
            DRIVER,
            backend,
            str(changed),
            str(host.state_dir),
            old,
            new,
            skip,
        ],
        check=False,
    )
    message = proc.stdout.strip()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in message, message
    assert "line " in message and "shop/web:http" in message, message
    assert host.ours(backend) == before
    assert host.run(["nft", "list", "ruleset"]).stdout == whole
    # And the next good apply goes through.
    proc = host.cli("apply", "-f", str(changed), backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert "10.180.0.3" in host.ours(backend)
