"""Read manifest sources: files, folders (optionally recursive) and stdin, within a size limit."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from svc2rules.errors import Diagnostic, InputError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_NAME = "<stdin>"
# All sources of a run together. A compile holds about 15 times its input in memory (30,000
# Services with 10 endpoints each: 55 MB of kubectl JSON or 51 MB of YAML, about 810 MB at its
# peak), so 256 MiB of input is about 4 GiB: more than any real cluster's Services and
# EndpointSlices (Kubernetes' tested limit is 10,000 Services), well short of what exhausts a
# node. --max-input-bytes raises it.
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Source:
    """The bytes of one manifest file (or of stdin), with the name used in diagnostics."""

    name: str
    data: bytes


class _Budget:
    """What is left of the size limit; a source that would pass it is refused, unread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def refusal(self, name: str, size: int | None = None) -> Diagnostic:
        """`name` would pass the limit (`size`: its size, when known before reading)."""
        used = self.limit - self.left
        detail = ""
        if size is not None:
            detail = f": {size} bytes" if not used else f": {used + size} bytes with the sources before it"
        return Diagnostic(
            name, f"input over the size limit of {self.limit} bytes{detail} (raise it with --max-input-bytes)"
        )


def read_sources(
    paths: Sequence[str],
    *,
    recursive: bool,
    stdin: BinaryIO,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> list[Source]:
    """Read every PATH (file, folder or "-"); with no PATH, read stdin.

    Folders contribute their *.yaml, *.yml and *.json files in sorted order, so the
    result does not depend on the order the file system lists them in. Together the sources
    may hold at most `max_bytes`: a file's size is checked before it is read, and no more than
    the limit is ever read from a pipe or stdin, so input beyond it costs nothing.
    """
    if not paths:
        paths = ["-"]
    budget = _Budget(max_bytes)
    sources: list[Source] = []
    problems: list[Diagnostic] = []
    stdin_read = False
    for path in paths:
        try:
            if path == "-":
                if not stdin_read:
                    sources.append(Source(STDIN_NAME, _read_stream(STDIN_NAME, stdin, budget)))
                    stdin_read = True
                continue
            p = Path(path)
            try:
                if p.is_dir():
                    sources.extend(_read_folder(p, recursive=recursive, budget=budget))
                else:
                    sources.append(Source(path, _read_file(path, p, budget)))
            except FileNotFoundError:
                problems.append(Diagnostic(path, "no such file or directory"))
            except OSError as exc:
                problems.append(Diagnostic(path, f"cannot read: {exc.strerror or exc}"))
        except _TooLarge as exc:
            # Nothing more is read: the run fails whatever the rest holds.
            problems.append(exc.diagnostic)
            break
    if problems:
        raise InputError(problems)
    return sources


class _TooLarge(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _read_folder(folder: Path, *, recursive: bool, budget: _Budget) -> list[Source]:
    pattern = "**/*" if recursive else "*"
    files = sorted(f for f in folder.glob(pattern) if f.suffix.lower() in MANIFEST_SUFFIXES and f.is_file())
    return [Source(str(f), _read_file(str(f), f, budget)) for f in files]


def _read_file(name: str, path: Path, budget: _Budget) -> bytes:
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return _read_stream(name, fh, budget)  # a pipe, a device: its size is unknown
        if info.st_size > budget.left:
            raise _TooLarge(budget.refusal(name, info.st_size))
        # One read of what fstat said (and a byte more: the file may be growing).
        head = fh.read(info.st_size + 1)
        if len(head) <= info.st_size:
            if len(head) > budget.left:
                raise _TooLarge(budget.refusal(name))
            budget.left -= len(head)
            return head
        return _read_stream(name, fh, budget, head)


def _read_stream(name: str, stream: BinaryIO, budget: _Budget, head: bytes = b"") -> bytes:
    """`head` and the rest of the stream, if together no more than what is left of the budget;
    refused (nothing read beyond one byte over the limit) when there is more."""
    chunks = [head]
    size = len(head)
    while size <= budget.left:
        chunk = stream.read(min(_CHUNK, budget.left - size + 1))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > budget.left:
        raise _TooLarge(budget.refusal(name))
    budget.left -= size
    return b"".join(chunks)
