"""The command line around the ipvs backend: --ipvs-scheduler, --backend auto, a kernel without IPVS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svc2rules.backends.ipvs.support import choose_auto, ipvs_unavailable
from svc2rules.cli import app

from .helpers import service, slice_

NODE = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "web.json"
    items = [service("web", "172.30.0.10"), slice_("web", [("10.180.0.1", "node1")])]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def test_ipvs_scheduler_flag_chooses_the_scheduler(manifest: Path) -> None:
    result = CliRunner().invoke(
        app, ["compile", "--backend", "ipvs", "-f", str(manifest), "--ipvs-scheduler", "wlc", *NODE]
    )
    assert result.exit_code == 0, result.stderr
    assert "-A -t 172.30.0.10:80 -s wlc\n" in result.stdout


@pytest.mark.parametrize("command", ["compile", "apply", "diff"])
def test_an_unknown_scheduler_is_one_line_and_exit_2(manifest: Path, command: str, tmp_path: Path) -> None:
    argv = [command, "--backend", "ipvs", "-f", str(manifest), "--ipvs-scheduler", "fifo", *NODE]
    if command != "compile":
        argv += ["--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --ipvs-scheduler: unknown IPVS scheduler 'fifo' "
        "(choose from: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh)\n"
    )


def test_auto_means_ipvs_when_the_kernel_has_it_else_iptables_and_says_why() -> None:
    assert choose_auto(lambda: None) == (
        "ipvs",
        "backend auto: the kernel supports IPVS: using the ipvs backend",
    )
    backend, why = choose_auto(lambda: "no ip_vs module")
    assert backend == "iptables"
    assert why == "backend auto: no ip_vs module; falling back to the iptables backend"


def test_compile_backend_auto_follows_this_kernel(manifest: Path) -> None:
    result = CliRunner().invoke(app, ["compile", "--backend", "auto", "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    if ipvs_unavailable() is None:
        assert "backend: ipvs" in result.stdout
        assert "using the ipvs backend" in result.stderr
    else:
        assert "backend: iptables" in result.stdout
        assert "falling back to the iptables backend" in result.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: apply checks CAP_NET_ADMIN first")
def test_apply_backend_ipvs_without_ipvs_fails_before_writing_anything(
    manifest: Path, tmp_path: Path
) -> None:
    if ipvs_unavailable() is None:
        pytest.skip("this kernel has IPVS")
    state = tmp_path / "state"
    result = CliRunner().invoke(
        app, ["apply", "--backend", "ipvs", "-f", str(manifest), "--state-dir", str(state), *NODE]
    )
    assert result.exit_code == 1
    # (after kube-proxy's deprecation notice: tests/backends/ipvs/test_deprecation.py)
    assert result.stderr.splitlines()[1].startswith("error: the kernel has no IPVS"), result.stderr
    assert not (state / "ipvs.json").exists() and not (state / "ipvs.pending.json").exists()
