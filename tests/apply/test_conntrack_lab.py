"""Stale UDP conntrack entries: a client that keeps its socket moves to a live endpoint at once."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml
from tests.lab.lab import Lab
from tests.lab.probe import Answered, Attempt, run_attempts
from tests.lab.topology import EXT_CLIENT

from .helpers import BACKENDS, CLI, labns_which, require_root

pytestmark = [pytest.mark.root, pytest.mark.lab]

VIP, PORT, TARGET = "172.30.0.53", 53, 5353
CLIENT_PORT = 61999  # one socket's 5-tuple, kept across the change (a DNS client's socket)


def dns(endpoint_ip: str) -> str:
    return to_yaml(
        service(
            "dns",
            "kube-system",
            clusterIP=VIP,
            ports=[{"name": "dns", "port": PORT, "targetPort": TARGET, "protocol": "UDP"}],
        ),
        endpoint_slice(
            "dns",
            "kube-system",
            [endpoint(endpoint_ip)],
            ports=[{"name": "dns", "port": TARGET, "protocol": "UDP"}],
        ),
    )


def ask(lab: Lab) -> str:
    # Resent until answered (probe.py): the same socket, so the same 5-tuple and conntrack entry.
    attempt = Attempt("udp", EXT_CLIENT, CLIENT_PORT, VIP, PORT)
    (outcome,) = asyncio.run(run_attempts(lab.topo.workers["ext"], [attempt]))
    assert isinstance(outcome, Answered), outcome
    return outcome.endpoint


def apply(lab: Lab, manifest: Path, backend: str, state: Path, *extra: str) -> None:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.node_netns,
            CLI,
            "apply",
            "--backend",
            backend,
            "--state-dir",
            str(state),
            "-f",
            str(manifest),
            *NODE_ARGS,
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("cleanup", [True, False], ids=["cleanup", "mutation-no-cleanup"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_flow_moves_to_the_live_endpoint(tmp_path: Path, backend: str, cleanup: bool) -> None:
    require_root()
    if not labns_which("conntrack"):
        pytest.skip("needs the conntrack tool")
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(dns("10.180.0.1"))
    new.write_text(dns("10.180.0.2"))
    with Lab.create() as lab:
        lab.add_pods(["10.180.0.1", "10.180.0.2"], [TARGET])
        apply(lab, old, backend, tmp_path / "state")
        assert ask(lab) == f"10.180.0.1:{TARGET}"
        assert ask(lab) == f"10.180.0.1:{TARGET}"  # the same socket stays on its endpoint
        extra = () if cleanup else ("--no-conntrack-cleanup",)
        apply(lab, new, backend, tmp_path / "state", *extra)
        answered = ask(lab)
        if cleanup:
            assert answered == f"10.180.0.2:{TARGET}", "the flow still goes to the removed endpoint"
        else:
            # Without the cleanup the old entry keeps DNATing to the removed endpoint (which
            # still answers in the lab): proves the test above can fail.
            assert answered == f"10.180.0.1:{TARGET}"
