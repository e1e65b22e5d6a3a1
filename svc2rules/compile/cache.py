"""`<state-dir>/<backend>.cache`: what earlier applies learnt about their input.

The on-disk memo of the compile (svc2rules/compile/core.py) for `apply`: every object that
passed validation, by fingerprint, and each Service group (its objects and the node config)
by fingerprint, with its warnings and its objects. An apply then validates and resolves only
the Services whose objects changed, and can resolve the previous version of a changed Service
again to know what it had loaded.

Two files: the index `<backend>.cache`, rewritten by every apply that compiled (a few MiB at
10k Services), and the objects `<backend>.cache-objects`, an append-only log of the encoded
objects (about the input's size) that an apply only appends the new objects to and reads the
few it needs from; it is rewritten when most of it is no longer referenced.

Only ever an optimisation: a cache that is missing, unreadable, corrupted (sizes and CRC-32s),
written by another svc2rules (the identity covers the version and a digest of the package's
code and templates) or not owned by us (it says which objects need no validation) is ignored,
and the run compiles everything. It is safe to delete at any time.

Index layout: a magic line, one JSON header line (identity, payload size and CRC-32, objects
log length), then the payload in marshal format (bytes, str, ints, tuples and dicts only):
`{"objects": {fingerprint: (offset, length, CRC-32, identity)}, "groups": {group fingerprint:
(warnings, ((source, fingerprint), ...))}, "sources": {name: (list index fields, kind,
apiVersion)}}`.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svc2rules.compile.core import Compilation
from svc2rules.compile.fingerprint import Fingerprint, decode_object
from svc2rules.compile.identity import code_identity
from svc2rules.compile.memo import Identity, Members, SourceIndex
from svc2rules.compile.read import InputObjects
from svc2rules.errors import Diagnostic
from svc2rules.load import RawObject
from svc2rules.load.listing import ListIndex

MAGIC = b"svc2rules-compile-cache\n"
FORMAT = 2
# Rewrite the objects log when it holds this much more than the live objects.
_LOG_SLACK = 2.0

WarningTuple = tuple[str, str, str | None, str | None, str | None]
Located = tuple[int, int, int, Identity]  # offset and length in the objects log, CRC-32, identity


def cache_path(state_dir: Path, backend: str) -> Path:
    return state_dir / f"{backend}.cache"


def _log_path(path: Path) -> Path:
    return path.with_name(path.name + "-objects")


@dataclass
class CompileCache:
    """The memo of one backend's applies (a svc2rules.compile.memo.Memo)."""

    path: Path
    objects: dict[Fingerprint, Located] = field(default_factory=dict)
    groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], Members]] = field(default_factory=dict)
    sources: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    log_length: int = 0  # of the objects log this index describes
    note: str | None = None  # why an existing cache was not used

    @classmethod
    def load(cls, path: Path) -> CompileCache:
        try:
            header, payload = _read(path)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError) as exc:
            return cls(path, note=f"compile cache {path} ignored ({exc}); compiling everything")
        return cls(path, payload["objects"], payload["groups"], payload["sources"], header["log"])

    # -- the Memo protocol -------------------------------------------------------------------

    def identity(self, fingerprint: Fingerprint) -> Identity | None:
        entry = self.objects.get(fingerprint)
        return None if entry is None else entry[3]

    def encoded(self, fingerprint: Fingerprint) -> bytes | None:
        entry = self.objects.get(fingerprint)
        if entry is None:
            return None
        offset, length, crc, _ = entry
        try:
            with open(_log_path(self.path), "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except OSError:
            return None
        return data if len(data) == length and zlib.crc32(data) == crc else None

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        entry = self.groups.get(fingerprint)
        if entry is None:
            return None
        return tuple(Diagnostic(*w) for w in entry[0]) if entry[0] else ()

    def members(self, fingerprint: Fingerprint) -> list[RawObject] | None:
        entry = self.groups.get(fingerprint)
        if entry is None:
            return None
        out = []
        for source, member in entry[1]:
            encoded = self.encoded(member)
            data = decode_object(encoded) if encoded is not None else None
            if data is None:
                return None
            out.append(RawObject(source, data))
        return out

    def source_index(self, name: str) -> SourceIndex | None:
        entry = self.sources.get(name)
        if entry is None:
            return None
        try:
            *fields_, kind, api_version = entry
            return ListIndex(*fields_), (kind, api_version)
        except TypeError:
            return None

    # -- writing ---------------------------------------------------------------------------------

    def save(self, compiled: Compilation) -> None:
        """Remember this run's input (and nothing older: what is not in the input is dropped).
        Best effort: a cache that cannot be written is only a slower next run."""
        read = compiled.objects
        if read is None:
            raise ValueError("a compile without fingerprints teaches a memo nothing")
        fingerprints = read.fingerprints
        known: dict[Fingerprint, Located] = {}
        new: list[int] = []  # input indices of the objects the log does not hold yet
        for i in read.valid:
            located = self.objects.get(fingerprints[i])
            if located is not None:
                known[fingerprints[i]] = located
            else:
                new.append(i)
        groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], Members]] = {}
        for entry in compiled.services:
            known_group = self.groups.get(entry.fingerprint)
            if known_group is not None:
                groups[entry.fingerprint] = known_group
                continue
            warnings = entry.resolution.warnings if entry.resolution is not None else ()
            groups[entry.fingerprint] = (
                tuple(_warning_tuple(w) for w in warnings),
                read.members(entry.members),
            )
        sources = {name: (*_index_fields(index), *context) for name, (index, context) in read.indexes.items()}
        if (
            not new
            and groups.keys() == self.groups.keys()
            and known.keys() == self.objects.keys()
            and sources == self.sources
        ):
            return
        try:
            objects, log_length = self._append(read, known, new)
            _write(self.path, {"objects": objects, "groups": groups, "sources": sources}, log_length)
        except (OSError, ValueError):
            return
        self.objects, self.groups, self.sources, self.log_length = objects, groups, sources, log_length

    def _append(
        self, read: InputObjects, known: dict[Fingerprint, Located], new: list[int]
    ) -> tuple[dict[Fingerprint, Located], int]:
        """Add the new objects to the log, or rewrite it when it is mostly dead (or missing);
        returns where every live object lies and the log's length."""
        log = _log_path(self.path)
        live = sum(entry[1] for entry in known.values()) + sum(len(read.encoded(i)) for i in new)
        start = self.log_length
        objects = dict(known)
        if start == 0 or start > _LOG_SLACK * live + (1 << 20) or not log.exists():
            # Every live object is in this run's input: the fresh log is written from it, never
            # from the old log (which may be damaged, or be another run's that died).
            start, objects, new = 0, {}, read.valid
            # A fresh log is a new file: whatever was there (damaged, or with other permissions)
            # is not appended to.
            with contextlib.suppress(FileNotFoundError):
                log.unlink()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as fh:
            # Past what the index describes lie only leftovers of runs that died before writing it.
            fh.truncate(start)
            fh.seek(start)
            offset = start
            chunks = []
            for i in new:
                encoded = read.encoded(i)
                objects[read.fingerprints[i]] = (
                    offset,
                    len(encoded),
                    zlib.crc32(encoded),
                    read.identities[i],
                )
                chunks.append(encoded)
                offset += len(encoded)
            fh.write(b"".join(chunks))
        return objects, offset


def _index_fields(index: ListIndex) -> tuple[Any, ...]:
    return (
        index.length,
        index.items_open,
        index.items_close,
        index.head,
        index.tail,
        index.starts,
        index.ends,
        index.digests,
    )


def _warning_tuple(diagnostic: Diagnostic) -> WarningTuple:
    return (diagnostic.source, diagnostic.message, diagnostic.kind, diagnostic.obj, diagnostic.field)


def _identity() -> dict[str, Any]:
    return {"format": FORMAT, "code": code_identity()}


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        # It says which objects need no validation: only believe a file only we can write.
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError("not owned by this user, or writable by others")
        data = fh.read()
    if not data.startswith(MAGIC):
        raise ValueError("not a compile cache")
    header_end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC) : header_end])
    if not isinstance(header, dict) or header.get("identity") != _identity():
        raise ValueError("written by another svc2rules")
    payload = data[header_end + 1 :]
    if len(payload) != header.get("size") or zlib.crc32(payload) != header.get("crc32"):
        raise ValueError("corrupted")
    if not isinstance(header.get("log"), int):
        raise ValueError("corrupted")
    log = _log_path(path)
    log_info = os.stat(log)
    if log_info.st_uid != os.geteuid() or log_info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError("objects log not owned by this user, or writable by others")
    if log_info.st_size < header["log"]:
        raise ValueError("objects log shorter than its index says")
    content = marshal.loads(payload)
    if not isinstance(content, dict) or not all(
        isinstance(content.get(key), dict) for key in ("objects", "groups", "sources")
    ):
        raise ValueError("corrupted")
    return header, content


def _write(path: Path, content: dict[str, Any], log_length: int) -> None:
    payload = marshal.dumps(content)
    header = {
        "identity": _identity(),
        "size": len(payload),
        "crc32": zlib.crc32(payload),
        "log": log_length,
    }
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        # No fsync: a torn or lost cache is detected (sizes, checksums) and only costs time.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + json.dumps(header).encode() + b"\n" + payload)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(path: Path) -> None:
    for file in (path, _log_path(path)):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
