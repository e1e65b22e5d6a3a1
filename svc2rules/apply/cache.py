"""`<state-dir>/<backend>.cache`: what earlier applies learnt about their input.

The memo of the incremental compile (svc2rules/resolve/incremental.py): the fingerprints of
every object that passed validation, and each Service's resolution by the fingerprint of its
objects and the node config. An apply then validates and resolves only the Services whose
objects changed.

Only ever an optimisation: a cache that is missing, unreadable, corrupted (its payload carries
a checksum), written by another svc2rules (the identity covers the version and a digest of the
package's code and templates) or not owned by us is ignored, and the run compiles everything.
It is safe to delete at any time. Resolutions are pickled, so the file is only read when it
belongs to our user and nobody else may write it.

Layout: a magic line, one JSON header line (format, identity, payload size and checksum),
then the payload in marshal format (bytes, tuples and dicts only): `{"valid": set of object
fingerprints, "groups": {group fingerprint: (warnings, pickled resolution)}}`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import pickle
import stat
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import svc2rules
from svc2rules import __version__
from svc2rules.errors import Diagnostic
from svc2rules.resolve.incremental import Fingerprint, IncrementalCompile
from svc2rules.resolve.plan import ServiceResolution

MAGIC = b"svc2rules-compile-cache\n"
FORMAT = 1
_PICKLE_PROTOCOL = 5

WarningTuple = tuple[str, str, str | None, str | None, str | None]


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
    valid: set[Fingerprint] = field(default_factory=set)
    groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], bytes]] = field(default_factory=dict)
    note: str | None = None  # why an existing cache was not used

    @classmethod
    def load(cls, path: Path) -> CompileCache:
        try:
            payload = _read(path)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError) as exc:
            return cls(path, note=f"compile cache {path} ignored ({exc}); compiling everything")
        return cls(path, set(payload["valid"]), dict(payload["groups"]))

    # -- the Memo protocol -------------------------------------------------------------------

    def is_valid(self, fingerprint: Fingerprint) -> bool:
        return fingerprint in self.valid

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        entry = self.groups.get(fingerprint)
        return None if entry is None else tuple(Diagnostic(*w) for w in entry[0])

    def resolution(self, fingerprint: Fingerprint) -> ServiceResolution | None:
        entry = self.groups.get(fingerprint)
        if entry is None:
            return None
        try:
            resolution = pickle.loads(entry[1])
        except Exception:  # noqa: BLE001 - a bad entry is only a cache miss: it is resolved again
            return None
        return resolution if isinstance(resolution, ServiceResolution) else None

    # -- writing ---------------------------------------------------------------------------------

    def save(self, compiled: IncrementalCompile) -> None:
        """Remember this run's input (and nothing older: what is not in the input is dropped).
        Best effort: a cache that cannot be written is only a slower next run."""
        groups: dict[Fingerprint, tuple[tuple[WarningTuple, ...], bytes]] = {}
        for entry in compiled.services:
            known = self.groups.get(entry.fingerprint)
            if known is not None:
                groups[entry.fingerprint] = known
            elif entry.resolution is not None:
                warnings = tuple(_warning_tuple(w) for w in entry.resolution.warnings)
                groups[entry.fingerprint] = (warnings, pickle.dumps(entry.resolution, _PICKLE_PROTOCOL))
        if groups == self.groups and compiled.valid == self.valid:
            return
        self.valid, self.groups = set(compiled.valid), groups
        with contextlib.suppress(OSError):
            _write(self.path, {"valid": self.valid, "groups": groups})


def _warning_tuple(diagnostic: Diagnostic) -> WarningTuple:
    return (diagnostic.source, diagnostic.message, diagnostic.kind, diagnostic.obj, diagnostic.field)


def _identity() -> dict[str, Any]:
    return {"format": FORMAT, "code": code_identity(), "pickle": _PICKLE_PROTOCOL}


def _read(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        # Unpickling runs code named by the file: only ever read a file that only we can write.
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
    if len(payload) != header.get("size") or hashlib.blake2b(payload).hexdigest() != header.get("blake2b"):
        raise ValueError("corrupted")
    content = marshal.loads(payload)
    if not isinstance(content, dict) or not isinstance(content.get("groups"), dict):
        raise ValueError("corrupted")
    return content


def _write(path: Path, content: dict[str, Any]) -> None:
    payload = marshal.dumps(content)
    header = {
        "identity": _identity(),
        "size": len(payload),
        "blake2b": hashlib.blake2b(payload).hexdigest(),
    }
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
