"""All or nothing, and one run at a time: SIGKILL at random moments, two applies at once."""

from __future__ import annotations

import difflib
import fcntl
import os
import random
import signal
import time
from pathlib import Path

import pytest

from .helpers import BACKENDS, Host, synthetic_cluster

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVICES = 1000  # x 10 endpoints: ~11k iptables chains, a load of a few seconds
KILLS = 20
# Bounds on a hang, not speeds: a load of a few seconds takes minutes on a busy machine, and a
# killed apply's loader keeps our lock until it ends.
HANG = 900.0


def wait_for_lock(host: Host, timeout: float = HANG) -> None:
    """Whoever takes our lock sees no load in flight (the loader holds it, see runner.py)."""
    host.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.state_dir / "lock", os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "lock still held"
                time.sleep(0.02)
    finally:
        os.close(fd)


def _closest_difference(live: str, dumps: dict[str, str]) -> str:
    """The lines by which `live` differs from the nearer of the two dumps (for the failure)."""
    diffs = {
        name: [ln for ln in difflib.unified_diff(dump.splitlines(), live.splitlines(), lineterm="", n=0)]
        for name, dump in dumps.items()
    }
    name = min(diffs, key=lambda n: len(diffs[n]))
    return f"live vs {name}:\n" + "\n".join(diffs[name][:40])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_leaves_exactly_old_or_new(host: Host, manifests: Path, backend: str) -> None:
    clusters = {}
    for name, shift in (("a", 0), ("b", 1)):
        path = manifests / f"{name}.json"
        path.write_text(synthetic_cluster(SERVICES, 10, shift=shift))
        clusters[name] = path
    dumps = {}
    durations = []
    for name in ("a", "b"):
        started = time.monotonic()
        proc = host.run(host.apply_argv(clusters[name], backend))
        durations.append(time.monotonic() - started)
        assert proc.returncode == 0
        dumps[name] = host.ours(backend)
    assert dumps["a"] != dumps["b"]
    seed = int(os.environ.get("SVC2RULES_KILL_SEED", time.time()))
    rng = random.Random(seed)
    span = max(durations)
    current = "b"
    seen = {"a": 0, "b": 0}
    for i in range(KILLS):
        target = "a" if current == "b" else "b"
        child = host.popen(host.apply_argv(clusters[target], backend))
        delay = span * rng.uniform(0.3, 1.5)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=HANG)
        wait_for_lock(host)
        live = host.ours(backend)
        matches = [name for name, dump in dumps.items() if dump == live]
        assert matches, (
            f"kill {i} at {delay:.2f}s (seed {seed}): live ruleset is neither old nor new\n"
            + _closest_difference(live, dumps)
        )
        current = matches[0]
        seen[current] += 1
    # Whatever state the kills left (pending state files, stale markers), apply recovers.
    proc = host.run(host.apply_argv(clusters["a"], backend))
    assert host.ours(backend) == dumps["a"], proc.stderr
    proc = host.run(host.apply_argv(clusters["a"], backend))
    assert "no changes" in proc.stderr
    print(f"seed {seed}: after the kills the host had a={seen['a']} b={seen['b']}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_applies_at_once_serialise(host: Host, manifests: Path, backend: str) -> None:
    paths = []
    for name, shift in (("a", 0), ("b", 1)):
        path = manifests / f"{name}.json"
        path.write_text(synthetic_cluster(300, 10, shift=shift))
        paths.append(path)
    dumps = []
    for path in paths:
        host.run(host.apply_argv(path, backend))
        dumps.append(host.ours(backend))
    for _ in range(2):
        first = host.popen(host.apply_argv(paths[0], backend))
        second = host.popen(host.apply_argv(paths[1], backend))
        _out1, err1 = first.communicate(timeout=HANG)
        _out2, err2 = second.communicate(timeout=HANG)
        assert (first.returncode, second.returncode) == (0, 0), err1 + err2
        live = host.ours(backend)
        assert live in dumps, "the result mixes both inputs"
        # The state file agrees with the kernel: re-applying the winner writes nothing.
        winner = paths[dumps.index(live)]
        proc = host.run(host.apply_argv(winner, backend))
        assert "no changes" in proc.stderr, proc.stderr
