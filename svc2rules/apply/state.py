"""The state file: what we last loaded, so a run never has to read the whole ruleset back.

`<state-dir>/<backend>.json` holds the owned objects as we loaded them plus a generation
id that is also written into the kernel (a marker the applier reads back cheaply). Before
a kernel write the new state goes to `<backend>.pending.json`; after the write succeeds it
replaces the state. A run that finds a pending file (a previous run died between the
kernel write and the rename) adopts it if the kernel carries its generation, and drops it
otherwise. Writes are atomic (temporary file, fsync, rename).

Large parts (a backend names them: every chain's rules, every set element; tens of MiB at
10k Services) go to a sidecar `<backend>.<token>.bulk` in marshal format, which reads and
writes several times faster than JSON; the JSON file names it and carries its size and
CRC-32. It is written (and fsynced) before the JSON that names it, so a state never names a
missing or partial bulk file, and bulk files no state names are removed. The JSON alone
answers the cheap questions (generation, input digest); `complete()` adds the bulk part.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import secrets
import time
import zlib
from pathlib import Path
from typing import Any

from svc2rules.errors import ApplyError

FORMAT = 1  # JSON only
BULK_FORMAT = 2  # JSON plus a bulk file
DEFAULT_STATE_DIR = Path("/var/lib/svc2rules")
BULK_REF = "bulk"


def new_generation() -> str:
    return f"{int(time.time())}-{secrets.token_hex(4)}"


class StateStore:
    def __init__(self, state_dir: Path, backend: str, bulk_keys: tuple[str, ...] = ()) -> None:
        self.dir = state_dir
        self.backend = backend
        self.bulk_keys = bulk_keys
        self.path = state_dir / f"{backend}.json"
        self.pending_path = state_dir / f"{backend}.pending.json"

    def load(self) -> dict[str, Any] | None:
        """The state without its bulk part (see complete())."""
        return _read(self.path)

    def load_pending(self) -> dict[str, Any] | None:
        return _read(self.pending_path)

    def complete(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The state with its bulk part, or None when that is missing or damaged."""
        ref = state.get(BULK_REF)
        if ref is None or any(key in state for key in self.bulk_keys):
            return state
        try:
            name, size, crc = ref["file"], ref["size"], ref["crc32"]
            if "/" in name or not name.startswith(f"{self.backend}."):
                return None
            data = (self.dir / name).read_bytes()
            if len(data) != size or zlib.crc32(data) != crc:
                return None
            bulk = marshal.loads(data)
        except (OSError, ValueError, EOFError, TypeError, KeyError):
            return None
        if not isinstance(bulk, dict):
            return None
        return {**state, **bulk}

    def write_pending(self, state: dict[str, Any]) -> None:
        state = dict(state)
        bulk = {key: state.pop(key) for key in self.bulk_keys if key in state}
        if bulk:
            state[BULK_REF] = self._write_bulk(bulk)
        state["format"] = BULK_FORMAT if BULK_REF in state else FORMAT
        _write(self.pending_path, state)

    def commit_pending(self) -> None:
        try:
            os.replace(self.pending_path, self.path)
            _fsync_dir(self.dir)
        except OSError as exc:
            raise ApplyError(f"cannot update state file {self.path}: {exc.strerror or exc}") from exc
        self._collect()

    def drop_pending(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pending_path.unlink()
        self._collect()

    def remove(self) -> None:
        for path in (self.path, self.pending_path, *self._bulk_files()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- bulk files ------------------------------------------------------------------------------

    def _bulk_files(self) -> list[Path]:
        return sorted(self.dir.glob(f"{self.backend}.*.bulk"))

    def _write_bulk(self, bulk: dict[str, Any]) -> dict[str, Any]:
        data = marshal.dumps(bulk)
        name = f"{self.backend}.{secrets.token_hex(6)}.bulk"
        path = self.dir / name
        tmp = path.with_name(path.name + ".tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise ApplyError(f"cannot write state file {path}: {exc.strerror or exc}") from exc
        return {"file": name, "size": len(data), "crc32": zlib.crc32(data)}

    def _collect(self) -> None:
        """Remove bulk files that neither the state nor a pending state names."""
        keep = set()
        for state in (self.load(), self.load_pending()):
            ref = (state or {}).get(BULK_REF)
            if isinstance(ref, dict):
                keep.add(ref.get("file"))
        for path in self._bulk_files():
            if path.name not in keep:
                with contextlib.suppress(OSError):
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
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, BULK_FORMAT):
        return None
    if data["format"] == BULK_FORMAT and not isinstance(data.get(BULK_REF), dict):
        return None
    return data


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        # One C-encoded string: json.dump would stream through the pure-Python encoder.
        text = json.dumps(state, separators=(",", ":"))
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
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
