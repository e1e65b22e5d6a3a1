"""`svc2rules proxy` as a process in a private network namespace: start, SIGHUP, SIGTERM."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml
from tests.userspace.netns import root_only
from tests.userspace.process import ProxyProcess, proxy_argv, write

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
    assert started.proc.wait(30) == 0


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
        assert proc.proc.wait(60) == 1
        assert any("cannot listen" in line and "20000" in line for line in proc.log), proc.log
    finally:
        proc.close()
