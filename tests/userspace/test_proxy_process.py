"""`svc2rules proxy` as a process in a private network namespace: start, SIGHUP, SIGTERM, and
the rules it loads with --apply-rules (removed at exit unless --keep-rules)."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml
from tests.lab.loaders import svc2rules_command
from tests.userspace.netns import root_only
from tests.userspace.process import PROCESS_DEADLINE, ProxyProcess, proxy_argv, write

pytestmark = root_only


def in_netns(*args: str, before: str = "") -> list[str]:
    """`unshare --net` then exec, so the pid we signal is the proxy's, alone in its namespace."""
    command = " ".join(shlex.quote(a) for a in proxy_argv(*args))
    return ["unshare", "--net", "sh", "-c", f"ip link set lo up && {before}exec {command}"]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(to_yaml(service(), endpoint_slice()))
    return path


@pytest.fixture
def started(manifest: Path) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(in_netns("-f", str(manifest), "--port-range", "20000-20999", *NODE_ARGS))
    yield proc
    proc.close()


def test_sighup_reloads_a_bad_manifest_is_survived_and_sigterm_exits_0(
    manifest: Path, started: ProxyProcess
) -> None:
    assert "1 listener(s) (1 TCP, 0 UDP)" in started.wait_for("ready")
    write(manifest, to_yaml(service(), endpoint_slice(), service(name="svc2", clusterIP="172.30.0.42")))
    started.send(signal.SIGHUP)
    assert "1 opened" in started.wait_for("reloaded")
    write(manifest, "kind: [broken")
    started.send(signal.SIGHUP)
    started.wait_for("reload failed, keeping the previous configuration")
    assert started.proc.poll() is None
    assert started.stop() == 0
    assert "stopped" in started.log[-1]


def test_sigint_also_drains_and_exits_0(started: ProxyProcess) -> None:
    started.wait_for("ready")
    started.send(signal.SIGINT)
    assert started.proc.wait(PROCESS_DEADLINE) == 0


def test_a_port_already_taken_at_start_exits_1(manifest: Path) -> None:
    holder = "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',20000)); s.listen(); time.sleep(30)"
    command = " ".join(
        shlex.quote(a) for a in proxy_argv("-f", str(manifest), "--port-range", "20000-20000", *NODE_ARGS)
    )
    # The holder shares the namespace; the proxy starts once the port is taken, and the holder
    # is killed as soon as the proxy has exited.
    script = (
        f'ip link set lo up; python3 -c "{holder}" & H=$!; '
        "until ss -Hltn 'sport = :20000' | grep -q .; do sleep 0.05; done; "
        f"{command}; rc=$?; kill $H; exit $rc"
    )
    proc = ProxyProcess(["unshare", "--net", "sh", "-c", script])
    try:
        assert proc.proc.wait(PROCESS_DEADLINE) == 1
        assert any("cannot listen" in line and "20000" in line for line in proc.log), proc.log
    finally:
        proc.close()


@pytest.fixture
def named_netns() -> Iterator[str]:
    """A namespace that outlives the proxy, so what it leaves behind can be looked at."""
    name = f"s2rus-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def ours_in(netns: str) -> list[str]:
    saved = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in saved.splitlines() if "USERSPACE" in line]


def test_apply_rules_loads_them_and_removes_them_at_exit(
    manifest: Path, named_netns: str, tmp_path: Path
) -> None:
    args = ("-f", str(manifest), "--apply-rules", "--state-dir", str(tmp_path), *NODE_ARGS)
    proc = ProxyProcess(["ip", "netns", "exec", named_netns, *proxy_argv(*args)])
    try:
        proc.wait_for("ready")
        assert sum("-j SVC2R-USERSPACE-PORTALS" in line for line in ours_in(named_netns)) == 2
        assert proc.stop() == 0
    finally:
        proc.close()
    assert ours_in(named_netns) == []
    assert [line for line in proc.log if "rules removed" in line]
    assert "stopped" in proc.log[-1]


def test_keep_rules_leaves_them_for_the_next_proxy_or_cleanup(
    manifest: Path, named_netns: str, tmp_path: Path
) -> None:
    args = ("-f", str(manifest), "--apply-rules", "--keep-rules", "--state-dir", str(tmp_path), *NODE_ARGS)
    proc = ProxyProcess(["ip", "netns", "exec", named_netns, *proxy_argv(*args)])
    try:
        proc.wait_for("ready")
        kept = ours_in(named_netns)
        assert proc.stop() == 0
    finally:
        proc.close()
    assert kept and ours_in(named_netns) == kept
    cleanup_argv = [*svc2rules_command(), "cleanup", "--backend", "userspace", "--state-dir", str(tmp_path)]
    cleanup = subprocess.run(
        ["ip", "netns", "exec", named_netns, *cleanup_argv], capture_output=True, text=True, check=False
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert ours_in(named_netns) == []
