"""Which code wrote a cache or a state: a digest of svc2rules' own sources and templates.

Kept apart from the compile path so that a run whose input has not changed (it compares
digests and stops) never imports the models and the resolver."""

from __future__ import annotations

import hashlib
import sys
from functools import cache
from pathlib import Path

import svc2rules
from svc2rules import __version__


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
