"""Read manifest sources: files, folders (optionally recursive) and stdin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from svc2rules.errors import Diagnostic, InputError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_NAME = "<stdin>"


@dataclass(frozen=True, slots=True)
class Source:
    """The bytes of one manifest file (or of stdin), with the name used in diagnostics."""

    name: str
    data: bytes


def read_sources(paths: Sequence[str], *, recursive: bool, stdin: BinaryIO) -> list[Source]:
    """Read every PATH (file, folder or "-"); with no PATH, read stdin.

    Folders contribute their *.yaml, *.yml and *.json files in sorted order, so the
    result does not depend on the order the file system lists them in.
    """
    if not paths:
        paths = ["-"]
    sources: list[Source] = []
    problems: list[Diagnostic] = []
    stdin_read = False
    for path in paths:
        if path == "-":
            if not stdin_read:
                sources.append(Source(STDIN_NAME, stdin.read()))
                stdin_read = True
            continue
        p = Path(path)
        try:
            if p.is_dir():
                sources.extend(_read_folder(p, recursive=recursive))
            else:
                sources.append(Source(path, p.read_bytes()))
        except FileNotFoundError:
            problems.append(Diagnostic(path, "no such file or directory"))
        except OSError as exc:
            problems.append(Diagnostic(path, f"cannot read: {exc.strerror or exc}"))
    if problems:
        raise InputError(problems)
    return sources


def _read_folder(folder: Path, *, recursive: bool) -> list[Source]:
    pattern = "**/*" if recursive else "*"
    files = sorted(f for f in folder.glob(pattern) if f.suffix.lower() in MANIFEST_SUFFIXES and f.is_file())
    return [Source(str(f), f.read_bytes()) for f in files]
