"""`<state-dir>/<backend>.cache`: what earlier applies learnt about their input.

The memo of the incremental compile (svc2rules/resolve/incremental.py): every object that
passed validation, by fingerprint, and each Service group (its objects and the node config)
by fingerprint, with its warnings and its objects. An apply then validates and resolves only
the Services whose objects changed, and can resolve the previous version of a changed Service
again to know what it had loaded.

Only ever an optimisation: a cache that is missing, unreadable, corrupted (size and CRC-32),
written by another svc2rules (the identity covers the version and a digest of the package's
code and templates) or not owned by us (it says which objects need no validation) is ignored,
and the run compiles everything. It is safe to delete at any time.

Layout: a magic line, one JSON header line (identity, payload size and CRC-32), then the
payload in marshal format (bytes, str, tuples and dicts only): `{"objects": {fingerprint:
encoded object}, "groups": {group fingerprint: (warnings, ((source, fingerprint), ...))}}`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import stat
import sys
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import svc2rules
from svc2rules import __version__
from svc2rules.errors import Diagnostic
from svc2rules.load import RawObject
from svc2rules.resolve.incremental import Fingerprint, IncrementalCompile

MAGIC = b"svc2rules-compile-cache\n"
FORMAT = 1

WarningTuple = tuple[str, str, str | None, str | None, str | None]
Members = tuple[tuple[str, Fingerprint], ...]  # (source, object fingerprint), the Service first


@cache
def code_identity() -> str:
    """A digest of the svc2rules code and templates that produce compile results: a cache or
    state written by different code (an upgrade, a development checkout) is not reused."""
    root = Path(svc2rules.__file__).resolve().parent
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{__version__}\0{sys.version_info[:2]}\0".encode())
    templates = root / "templates"
    if not templates.is_dir():  # a source checkout keeps them next to the package
        templates = root.parent / "templates"
    for folder, pattern in ((root, "*.py"), (templates, "*.j2")):
        for path in sorted(folder.rglob(pattern)):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_path(state_dir: Path, backend: str) -> Path:
    return state_dir / f"{backend}.cache"


@dataclass
class CompileCache:
    """The memo of one backend's applies (see svc2rules.resolve.incremental.Memo)."""

    path: Path
    objects: dict[Fingerprint, bytes] = field(default_factory=dict)
    groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], Members]] = field(default_factory=dict)
    note: str | None = None  # why an existing cache was not used

    @classmethod
    def load(cls, path: Path) -> CompileCache:
        try:
            payload = _read(path)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError) as exc:
            return cls(path, note=f"compile cache {path} ignored ({exc}); compiling everything")
        return cls(path, payload["objects"], payload["groups"])

    # -- the Memo protocol -------------------------------------------------------------------

    def is_valid(self, fingerprint: Fingerprint) -> bool:
        return fingerprint in self.objects

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
            encoded = self.objects.get(member)
            if encoded is None:
                return None
            try:
                data = marshal.loads(encoded)
            except (ValueError, EOFError, TypeError):
                return None
            if not isinstance(data, dict):
                return None
            out.append(RawObject(source, data))
        return out

    # -- writing ---------------------------------------------------------------------------------

    def save(self, compiled: IncrementalCompile) -> None:
        """Remember this run's input (and nothing older: what is not in the input is dropped).
        Best effort: a cache that cannot be written is only a slower next run."""
        fingerprints = compiled.fingerprints
        objects = {fingerprints[i]: compiled.encoded[i] for i in compiled.valid}
        groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], Members]] = {}
        for entry in compiled.services:
            known = self.groups.get(entry.fingerprint)
            if known is not None:
                groups[entry.fingerprint] = known
                continue
            warnings = entry.resolution.warnings if entry.resolution is not None else ()
            members = tuple((compiled.raw[i].source, fingerprints[i]) for i in entry.members)
            groups[entry.fingerprint] = (tuple(_warning_tuple(w) for w in warnings), members)
        if groups.keys() == self.groups.keys() and objects.keys() == self.objects.keys():
            return
        self.objects, self.groups = objects, groups
        with contextlib.suppress(OSError):
            _write(self.path, {"objects": objects, "groups": groups})


def _warning_tuple(diagnostic: Diagnostic) -> WarningTuple:
    return (diagnostic.source, diagnostic.message, diagnostic.kind, diagnostic.obj, diagnostic.field)


def _identity() -> dict[str, Any]:
    return {"format": FORMAT, "code": code_identity()}


def _read(path: Path) -> dict[str, Any]:
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
    content = marshal.loads(payload)
    if (
        not isinstance(content, dict)
        or not isinstance(content.get("groups"), dict)
        or not isinstance(content.get("objects"), dict)
    ):
        raise ValueError("corrupted")
    return content


def _write(path: Path, content: dict[str, Any]) -> None:
    payload = marshal.dumps(content)
    header = {"identity": _identity(), "size": len(payload), "crc32": zlib.crc32(payload)}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        # No fsync: a torn or lost cache is detected (size, checksum) and only costs time.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + json.dumps(header).encode() + b"\n" + payload)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
