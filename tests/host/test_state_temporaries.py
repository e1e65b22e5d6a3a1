"""A state write that fails (a full disk) or is killed leaves no temporary file for good: the
failing write removes its own, and the next write, commit, drop or remove() any left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from svc2rules.errors import ApplyError
from svc2rules.host.state import StateStore

BULK = ("tables",)
STATE = {"generation": "g1", "tables": {"nat": {"chain": ["rule"] * 100}}}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def full_disk(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fail_at", [1, 2], ids=["bulk file", "json file"])
def test_a_write_that_finds_the_disk_full_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    calls = 0
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            full_disk(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)  # the state module calls os.fsync
    with pytest.raises(ApplyError, match="No space left on device"):
        StateStore(tmp_path, "iptables", BULK).write_pending(STATE)
    assert leftovers(tmp_path) == []


def killed_writes(folder: Path) -> list[Path]:
    """What a run killed between creating its temporaries and renaming them leaves."""
    paths = [
        folder / "iptables.0123456789ab.bulk.tmp",
        folder / "iptables.json.tmp4242",
        folder / "iptables.pending.json.tmp4242",
    ]
    for path in paths:
        path.write_bytes(b"x" * 1000)
    return paths


def test_the_next_write_removes_what_a_killed_write_left(tmp_path: Path) -> None:
    killed_writes(tmp_path)
    store = StateStore(tmp_path, "iptables", BULK)
    store.write_pending(STATE)
    assert leftovers(tmp_path) == []
    store.commit_pending()
    assert (store.complete(store.load() or {}) or {}).get("tables") == STATE["tables"]


def test_a_commit_or_a_drop_removes_them_too(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "iptables", BULK)
    store.write_pending(STATE)
    killed_writes(tmp_path)
    store.commit_pending()
    assert leftovers(tmp_path) == []
    killed_writes(tmp_path)
    store.drop_pending()
    assert leftovers(tmp_path) == []


def test_cleanup_removes_them_and_only_this_backends(tmp_path: Path) -> None:
    killed_writes(tmp_path)
    other = tmp_path / "nftables.json.tmp4242"
    other.write_bytes(b"x")
    StateStore(tmp_path, "iptables", BULK).remove()
    assert leftovers(tmp_path) == ["nftables.json.tmp4242"]
