"""The state file: what we last loaded, so a run never has to read the whole ruleset back.

`<state-dir>/<backend>.json` holds the owned objects as we loaded them plus a generation
id that is also written into the kernel (a marker the applier reads back cheaply). Before
a kernel write the new state goes to `<backend>.pending.json`; after the write succeeds it
replaces the state. A run that finds a pending file (a previous run died between the
kernel write and the rename) adopts it if the kernel carries its generation, and drops it
otherwise. Writes are atomic (temporary file, fsync, rename).

Large parts (a backend names them: every chain's rules, every set element; tens of MiB at
10k Services) go to a sidecar `<backend>.<token>.bulk` in marshal format, which reads and
writes several times faster than JSON. The JSON alone answers the cheap questions
(generation, input digest); `complete()` adds the bulk part.

A bulk file is a log of records: the whole bulk part, then what later states changed in it
(a one-Service change is a few KiB instead of rewriting tens of MiB). The JSON names the file
and the records that make its state, each with its offset, length and CRC-32; a record is
appended (and fsynced) before the JSON that names it, always right after the records the
current state names, so no state ever names a missing or partial record. A log that has
grown is started afresh (a new file), and bulk files no state names are removed, as are the
temporary files of writes that failed (a full disk) or were killed: by the next write, commit or
drop, and by remove().

Nothing read back is trusted blindly. The JSON ends with a SHA-256 of everything before it,
its entries are checked against the backend's state TypedDict (host/schema.py), and every bulk
record carries the generation it was written for: the state's generation must be its last
record's, so a JSON pointed back at an earlier set of its own records is caught (the engine
checks that generation against the kernel's marker). A state failing any check is unknown:
`problem` says why, and the engine reads our objects back from the kernel and reloads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import secrets
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from svc2rules.errors import ApplyError
from svc2rules.host.schema import shape_problem

FORMAT = 3  # JSON only (1: without its checksum)
BULK_FORMAT = 4  # JSON plus a bulk file (2: without checksum and record generations)
# The JSON's last entry: the SHA-256 (hex) of the text before it, closed by "}".
_CHECKSUM_HEAD = ',"checksum":"'
_CHECKSUM_TAIL = len(_CHECKSUM_HEAD) + 64 + 2
DEFAULT_STATE_DIR = Path("/var/lib/svc2rules")
BULK_REF = "bulk"
# A bulk log is started afresh past this many records, or when its changes outweigh a
# quarter of its first record: reading it back stays about the cost of reading one record.
_MAX_RECORDS = 64
_MAX_DELTA_SHARE = 4
# Delta operations (marshal-able, never a value of the state itself).
_SET, _DELETE, _PATCH = 0, 1, 2
# Bulk entry -> inner table -> the only keys that may have changed (see write_pending).
Touched = dict[str, dict[Any, Iterable[Any]]]


def new_generation() -> str:
    return f"{int(time.time())}-{secrets.token_hex(4)}"


class StateStore:
    def __init__(
        self, state_dir: Path, backend: str, bulk_keys: tuple[str, ...] = (), schema: type | None = None
    ) -> None:
        self.dir = state_dir
        self.backend = backend
        self.bulk_keys = bulk_keys
        # The backend's state TypedDict: what a state read back must look like.
        self.schema = schema
        # Why the last state read (load, load_pending, complete) was not trusted, for the
        # engine to say; None when it was, or when there was none.
        self.problem: str | None = None
        self.path = state_dir / f"{backend}.json"
        self.pending_path = state_dir / f"{backend}.pending.json"
        # The bulk part complete() read last, or the one this store committed last:
        # (file, records, content). A store kept between writes (`svc2rules run`) appends to it.
        self._base: tuple[str, list[tuple[int, int, int]], dict[str, Any]] | None = None
        self._pending_base: tuple[str, list[tuple[int, int, int]], dict[str, Any]] | None = None

    def load(self) -> dict[str, Any] | None:
        """The state without its bulk part (see complete()); None when there is none or it fails
        a check (then `problem` says which)."""
        return self._checked(self.path)

    def load_pending(self) -> dict[str, Any] | None:
        return self._checked(self.pending_path)

    def _checked(self, path: Path) -> dict[str, Any] | None:
        state, self.problem = _read(path)
        if state is not None and self.schema is not None:
            problem = shape_problem(state, self.schema, self.bulk_keys)
            if problem is not None:
                self.problem = f"state file {path} does not hold a {self.backend} state ({problem})"
                return None
        return state

    def complete(self, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """The state with its bulk part, or None when that is missing or damaged."""
        self.problem = None
        ref = state.get(BULK_REF)
        if ref is None or any(key in state for key in self.bulk_keys):
            return dict(state)
        damaged = f"state file {self.path} names a missing or damaged bulk file"
        try:
            name, records = ref["file"], [tuple(r) for r in ref["records"]]
            if "/" in name or not name.startswith(f"{self.backend}.") or not records:
                self.problem = damaged
                return None
            with open(self.dir / name, "rb") as fh:
                data = fh.read(records[-1][0] + records[-1][1])
            parts = []
            for offset, length, crc in records:
                chunk = data[offset : offset + length]
                if len(chunk) != length or zlib.crc32(chunk) != crc:
                    self.problem = damaged
                    return None
                generation, part = marshal.loads(chunk)
                parts.append(part)
        except (OSError, ValueError, EOFError, TypeError, KeyError, IndexError):
            self.problem = damaged
            return None
        if generation != state.get("generation"):
            self.problem = (
                f"state file {self.path} (generation {state.get('generation')}) names bulk records "
                f"of generation {generation}: an earlier state's"
            )
            return None
        bulk, *deltas = parts
        if not isinstance(bulk, dict) or not all(isinstance(delta, dict) for delta in deltas):
            self.problem = damaged
            return None
        for delta in deltas:
            _patch(bulk, delta)
        # What the next write appends its changes to (see write_pending).
        self._base = (name, records, bulk)
        return {**state, **bulk}

    def write_pending(self, state: Mapping[str, Any], touched: Touched | None = None) -> None:
        """Write the state a kernel write is about to load. `touched` may say, for bulk entries
        that are tables of tables, the only inner keys that can differ from the state last
        completed (an applier that changed a few of 100k elements knows which)."""
        self._remove_temporaries()
        state = dict(state)
        bulk = {key: state.pop(key) for key in self.bulk_keys if key in state}
        self._pending_base = None
        if bulk:
            ref = state[BULK_REF] = self._write_bulk(bulk, touched or {}, state.get("generation"))
            self._pending_base = (ref["file"], ref["records"], bulk)
        state["format"] = BULK_FORMAT if BULK_REF in state else FORMAT
        _write(self.pending_path, state)

    def commit_pending(self) -> None:
        try:
            os.replace(self.pending_path, self.path)
            _fsync_dir(self.dir)
        except OSError as exc:
            raise ApplyError(f"cannot update state file {self.path}: {exc.strerror or exc}") from exc
        self._base, self._pending_base = self._pending_base, None
        self._collect()

    def drop_pending(self) -> None:
        self._pending_base = None
        with contextlib.suppress(FileNotFoundError):
            self.pending_path.unlink()
        self._collect()

    def remove(self) -> None:
        for path in (self.path, self.pending_path, *self._bulk_files(), *self._temporaries()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _temporaries(self) -> list[Path]:
        """What writes leave when they fail or are killed before their rename: the bulk file's
        `.tmp` and the JSON files' `.tmp<pid>`."""
        patterns = (f"{self.backend}.*.bulk.tmp", f"{self.path.name}.tmp*", f"{self.pending_path.name}.tmp*")
        return sorted(path for pattern in patterns for path in self.dir.glob(pattern))

    def _remove_temporaries(self) -> None:
        """Runs hold the lock, so any temporary here is a failed or killed run's leftover."""
        for path in self._temporaries():
            _unlink_quietly(path)

    # -- bulk files ------------------------------------------------------------------------------

    def _bulk_files(self) -> list[Path]:
        return sorted(self.dir.glob(f"{self.backend}.*.bulk"))

    def _write_bulk(self, bulk: dict[str, Any], touched: Touched, generation: str | None) -> dict[str, Any]:
        """Append what changed since the bulk part complete() read, or start a new log. Each
        record holds the generation of the state it completes."""
        if self._base is not None:
            name, records, base = self._base
            delta = _diff(base, bulk, touched)
            data = marshal.dumps((generation, delta))
            deltas = sum(length for _, length, _ in records[1:]) + len(data)
            if len(records) < _MAX_RECORDS and deltas * _MAX_DELTA_SHARE < records[0][1]:
                end = records[-1][0] + records[-1][1]
                self._append(self.dir / name, end, data)
                return {"file": name, "records": [*records, (end, len(data), zlib.crc32(data))]}
        data = marshal.dumps((generation, bulk))
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
            _unlink_quietly(tmp)  # a full disk must not keep what did fit
            raise ApplyError(f"cannot write state file {path}: {exc.strerror or exc}") from exc
        return {"file": name, "records": [(0, len(data), zlib.crc32(data))]}

    @staticmethod
    def _append(path: Path, end: int, data: bytes) -> None:
        """Write a record right after the current state's records: anything there already is a
        record of a run that did not commit, which no state names."""
        try:
            with open(path, "r+b") as fh:
                fh.truncate(end)
                fh.seek(end)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise ApplyError(f"cannot write state file {path}: {exc.strerror or exc}") from exc

    def _collect(self) -> None:
        """Remove bulk files that neither the state nor a pending state names."""
        keep = set()
        for path in (self.path, self.pending_path):
            ref = (_read(path)[0] or {}).get(BULK_REF)
            if isinstance(ref, dict):
                keep.add(ref.get("file"))
        for path in self._bulk_files():
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()
        self._remove_temporaries()


def _diff(old: dict[Any, Any], new: dict[Any, Any], touched: dict[Any, Any] | None = None) -> dict[Any, Any]:
    """How to turn `old` into `new`, recursing into dicts both have. Values the applier carried
    over are the same objects, so an unchanged table costs one identity check. `touched` is a
    Touched (per bulk entry, per inner table, the only keys that may differ) or a level of one."""
    out: dict[Any, Any] = {}
    for key, value in new.items():
        before = old.get(key, _DELETE_MARK)
        if before is value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            hint = touched.get(key) if touched is not None else None
            if hint is None or isinstance(hint, dict):
                inner = _diff(before, value, hint)
            else:
                inner = _diff_keys(before, value, hint)
            if inner:
                out[key] = (_PATCH, inner)
        elif before is _DELETE_MARK or before != value or type(before) is not type(value):
            out[key] = (_SET, value)
    for key in old.keys() - new.keys():
        out[key] = (_DELETE,)
    return out


def _diff_keys(old: dict[Any, Any], new: dict[Any, Any], keys: Iterable[Any]) -> dict[Any, Any]:
    """_diff of two tables that differ at most at `keys` (their values compared whole)."""
    out: dict[Any, Any] = {}
    for key in keys:
        after, before = new.get(key, _DELETE_MARK), old.get(key, _DELETE_MARK)
        if after is before:
            continue
        if after is _DELETE_MARK:
            out[key] = (_DELETE,)
        elif before is _DELETE_MARK or before != after or type(before) is not type(after):
            out[key] = (_SET, after)
    return out


def _patch(target: dict[Any, Any], delta: dict[Any, Any]) -> None:
    for key, operation in delta.items():
        if operation[0] == _SET:
            target[key] = operation[1]
        elif operation[0] == _DELETE:
            target.pop(key, None)
        else:
            inner = target.get(key)
            if not isinstance(inner, dict):
                inner = target[key] = {}
            _patch(inner, operation[1])


_DELETE_MARK = object()


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The state in `path` and, when there is a file but no state to trust, why.

    An unreadable, torn, edited or foreign state is unknown: the engine then reads our objects
    back from the kernel and reloads them, which is always safe."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read state file {path}: {exc.strerror or exc}"
    body, digest = raw[:-_CHECKSUM_TAIL] + b"}", raw[-_CHECKSUM_TAIL:]
    signed = digest.startswith(_CHECKSUM_HEAD.encode()) and digest.endswith(b'"}')
    try:
        data = json.loads(raw)
    except ValueError:
        return None, f"state file {path} is not JSON (torn or damaged)"
    if not signed or hashlib.sha256(body).hexdigest().encode() != digest[len(_CHECKSUM_HEAD) : -2]:
        if isinstance(data, dict) and "checksum" in data:
            return None, f"state file {path} fails its checksum (edited or damaged)"
        return None, f"state file {path} has no checksum (written by another svc2rules version?)"
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, BULK_FORMAT):
        return None, f"state file {path} is not in this svc2rules version's format"
    if data["format"] == BULK_FORMAT and not isinstance(data.get(BULK_REF), dict):
        return None, f"state file {path} names no bulk file"
    del data["checksum"]
    return data, None


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        # One C-encoded string: json.dump would stream through the pure-Python encoder.
        body = json.dumps(
            {key: value for key, value in state.items() if key != "checksum"}, separators=(",", ":")
        )
        text = f'{body[:-1]}{_CHECKSUM_HEAD}{hashlib.sha256(body.encode()).hexdigest()}"}}'
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ApplyError(f"cannot write state file {path}: {exc.strerror or exc}") from exc


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
