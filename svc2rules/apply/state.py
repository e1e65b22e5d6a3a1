"""The state file: what we last loaded, so a run never has to read the whole ruleset back.

`<state-dir>/<backend>.json` holds the owned objects as we loaded them plus a generation
id that is also written into the kernel (a marker the applier reads back cheaply). Before
a kernel write the new state goes to `<backend>.pending.json`; after the write succeeds it
replaces the state. A run that finds a pending file (a previous run died between the
kernel write and the rename) adopts it if the kernel carries its generation, and drops it
otherwise. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from svc2rules.errors import ApplyError

FORMAT = 1
DEFAULT_STATE_DIR = Path("/var/lib/svc2rules")


def new_generation() -> str:
    return f"{int(time.time())}-{secrets.token_hex(4)}"


class StateStore:
    def __init__(self, state_dir: Path, backend: str) -> None:
        self.dir = state_dir
        self.backend = backend
        self.path = state_dir / f"{backend}.json"
        self.pending_path = state_dir / f"{backend}.pending.json"

    def load(self) -> dict[str, Any] | None:
        return _read(self.path)

    def load_pending(self) -> dict[str, Any] | None:
        return _read(self.pending_path)

    def write_pending(self, state: dict[str, Any]) -> None:
        _write(self.pending_path, state)

    def commit_pending(self) -> None:
        try:
            os.replace(self.pending_path, self.path)
            _fsync_dir(self.dir)
        except OSError as exc:
            raise ApplyError(f"cannot update state file {self.path}: {exc.strerror or exc}") from exc

    def drop_pending(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pending_path.unlink()

    def remove(self) -> None:
        for path in (self.path, self.pending_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # An unreadable or torn state is treated as unknown: the applier then reloads
        # everything after reading the kernel, which is always safe.
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def _write(path: Path, state: dict[str, Any]) -> None:
    state = {"format": FORMAT, **state}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ApplyError(f"cannot write state file {path}: {exc.strerror or exc}") from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
