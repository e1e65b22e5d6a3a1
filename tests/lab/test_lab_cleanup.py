"""The lab leaves no namespace behind: not on success, not when the test raises, not on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import netns
from .conftest import require_root
from .lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
VICTIM = Path(__file__).with_name("victim_cleanup.py")
# Bounds on a victim that hangs, not speeds: starting pytest and building a lab can take a long
# while on a busy host. The victim waits this long for its signal (victim_cleanup.py).
VICTIM_DEADLINE = 300.0


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def test_context_manager_cleans_up_when_body_raises() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), Lab.create() as lab:
        names = list(lab.topo.ns.values())
        assert set(names) <= netns.list_netns()
        raise RuntimeError("boom")
    assert len(names) == 4
    assert not set(names) & netns.list_netns()


def _run_victim(tmp_path: Path, mode: str, sig: int | None) -> tuple[int, list[str], str]:
    out = tmp_path / "names.json"
    env = {
        **os.environ,
        "S2R_VICTIM_OUT": str(out),
        "S2R_VICTIM_MODE": mode,
        "S2R_VICTIM_WAIT": str(VICTIM_DEADLINE),
    }
    # hypothesis is not needed and its plugin import costs seconds.
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        str(VICTIM),
    ]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if sig is not None:
            deadline = time.monotonic() + VICTIM_DEADLINE
            while not out.exists() or not out.read_text():
                assert proc.poll() is None, "victim exited before building its lab"
                assert time.monotonic() < deadline, "victim never built its lab"
                time.sleep(0.05)
            proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=VICTIM_DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    names: list[str] = json.loads(out.read_text())
    return proc.returncode, names, stdout.decode(errors="replace")


def test_fixture_cleans_up_when_test_raises(tmp_path: Path) -> None:
    rc, names, output = _run_victim(tmp_path, "raise", None)
    assert rc == 1 and "failed on purpose" in output, output
    assert len(names) == 4 and all(n.startswith(netns.PREFIX) for n in names)
    assert not set(names) & netns.list_netns(), output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_fixture_cleans_up_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    rc, names, output = _run_victim(tmp_path, "wait", sig)
    assert rc != 0, output
    assert len(names) == 4
    assert not set(names) & netns.list_netns(), output


def test_reap_stale_removes_only_dead_owners() -> None:
    # A pid that certainly existed and is now gone.
    child = subprocess.Popen(["true"])
    child.wait()
    dead = f"{netns.PREFIX}{child.pid}-abcdef-node"
    alive = f"{netns.PREFIX}1-abcdef-node"  # pid 1 is always alive
    netns.register([dead, alive])
    try:
        netns.run(["ip", "netns", "add", dead])
        netns.run(["ip", "netns", "add", alive])
        reaped = netns.reap_stale()
        assert dead in reaped and alive not in reaped
        assert dead not in netns.list_netns() and alive in netns.list_netns()
    finally:
        netns.delete_netns([dead, alive])
