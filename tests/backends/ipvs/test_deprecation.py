"""IPVS is deprecated in kube-proxy (issue 14, point 8; KEP-5495): `--backend ipvs`, a config
file's `mode: ipvs` and `--backend auto` choosing ipvs print kube-proxy's own notice
(cmd/kube-proxy/app/server_linux.go createProxier, v1.35) as one line on stderr, for compile,
apply, diff and run; a cleanup (what a migration away from ipvs runs) and every other backend
say nothing of it, and auto's fallback to iptables stays as it is."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svc2rules.backends.ipvs import support
from svc2rules.backends.ipvs.support import DEPRECATION, ipvs_unavailable
from svc2rules.cli import app
from tests.apply.helpers import CLI, drop_host, new_host, require_root

from .helpers import service, slice_

NODE = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
NOTICE = f"warning: {DEPRECATION}"
KUBE_PROXYS_TEXT = "The ipvs proxier is now deprecated and may be removed in a future release. Please use 'nftables' instead."


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "web.json"
    items = [service("web", "172.30.0.10"), slice_("web", [("10.180.0.1", "node1")])]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def notices(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if "ipvs proxier is now deprecated" in line)


def test_the_notice_is_kube_proxys_text() -> None:
    assert DEPRECATION == KUBE_PROXYS_TEXT


def test_compile_backend_ipvs_says_it_once(manifest: Path) -> None:
    result = CliRunner().invoke(app, ["compile", "--backend", "ipvs", "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    assert NOTICE in result.stderr.splitlines() and notices(result.stderr) == 1
    assert "-A -t 172.30.0.10:80" in result.stdout  # the output itself is unchanged


def test_a_config_files_mode_ipvs_says_it(manifest: Path, tmp_path: Path) -> None:
    config = tmp_path / "kube-proxy.yaml"
    config.write_text(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n"
    )
    result = CliRunner().invoke(app, ["compile", "--config", str(config), "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    assert notices(result.stderr) == 1


@pytest.mark.parametrize("backend", ["iptables", "nftables", "userspace", "dns"])
def test_other_backends_say_nothing_of_it(manifest: Path, backend: str) -> None:
    result = CliRunner().invoke(app, ["compile", "--backend", backend, "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    assert notices(result.stderr) == 0


def test_auto_choosing_ipvs_says_it(manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    choose = support.choose_auto
    monkeypatch.setattr(support, "choose_auto", lambda: choose(lambda: None))
    result = CliRunner().invoke(app, ["compile", "--backend", "auto", "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        "backend auto: the kernel supports IPVS: using the ipvs backend",
        NOTICE,
    ]


def test_auto_falling_back_to_iptables_says_nothing_of_it(
    manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    choose = support.choose_auto
    monkeypatch.setattr(support, "choose_auto", lambda: choose(lambda: "no ip_vs"))
    result = CliRunner().invoke(app, ["compile", "--backend", "auto", "-f", str(manifest), *NODE])
    assert result.exit_code == 0, result.stderr
    assert "falling back to the iptables backend" in result.stderr
    assert notices(result.stderr) == 0 and "backend: iptables" in result.stdout


def test_a_bad_flag_is_still_the_only_line(manifest: Path) -> None:
    argv = ["compile", "--backend", "ipvs", "-f", str(manifest), "--ipvs-scheduler", "fifo", *NODE]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and notices(result.stderr) == 0


@pytest.mark.root
@pytest.mark.parametrize("command", ["apply", "diff"])
def test_apply_and_diff_say_it(manifest: Path, tmp_path: Path, command: str) -> None:
    """On a kernel without IPVS (as here): the notice, then the refusal; nothing written."""
    if os.geteuid() != 0:
        pytest.skip("needs root: apply and diff check CAP_NET_ADMIN first")
    if ipvs_unavailable() is None:
        pytest.skip("this kernel has IPVS: an ipvs apply would change this host")
    state = tmp_path / "state"
    argv = [command, "--backend", "ipvs", "-f", str(manifest), "--state-dir", str(state), *NODE]
    result = CliRunner().invoke(app, argv)
    lines = result.stderr.splitlines()
    assert lines[0] == NOTICE and notices(result.stderr) == 1, result.stderr
    assert lines[1].startswith("error: the kernel has no IPVS"), result.stderr
    assert not (state / "ipvs.json").exists()


@pytest.mark.root
def test_cleanup_says_nothing_of_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: cleanup checks CAP_NET_ADMIN first")
    argv = ["cleanup", "--backend", "ipvs", "--dry-run", "--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.stderr
    assert notices(result.stderr) == 0


@pytest.mark.root
def test_run_says_it_once_at_start(manifest: Path, tmp_path: Path) -> None:
    """`run` in a throw-away network namespace: the notice comes before the agent is ready."""
    require_root()
    host = new_host(tmp_path, "ipvsrun")
    argv = [CLI, "run", "--backend", "ipvs", "-f", str(manifest), "--state-dir", str(tmp_path / "state")]
    argv += ["--healthz-bind-address", "", "--metrics-bind-address", "", *NODE]
    proc = host.popen(argv)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120  # a bound on a hang, not a verdict on speed
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                break
        assert any(line.startswith("ready:") for line in seen), seen
        assert seen.count(NOTICE) == 1 and seen.index(NOTICE) < len(seen) - 1, seen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drop_host(host)
