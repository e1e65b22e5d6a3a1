"""The one compile path (full, and incremental against a memo) and the memo it consults.

Pure: compile.core, compile.read, compile.memo, compile.fingerprint. The on-disk memo of
`apply` (file I/O, in the state dir) is compile.cache, imported by who needs it.

The names below are imported on first use: importing the package (for compile.identity, say)
does not load the models and the resolver, which a run with unchanged input never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from svc2rules.compile.core import Compilation, ServiceEntry, compile_sources
    from svc2rules.compile.fingerprint import Fingerprint
    from svc2rules.compile.memo import Identity, Memo, MemoryMemo, SourceIndex

_HOMES = {
    "Compilation": "core",
    "ServiceEntry": "core",
    "compile_sources": "core",
    "Fingerprint": "fingerprint",
    "Identity": "memo",
    "Memo": "memo",
    "MemoryMemo": "memo",
    "SourceIndex": "memo",
}

__all__ = [
    "Compilation",
    "Fingerprint",
    "Identity",
    "Memo",
    "MemoryMemo",
    "ServiceEntry",
    "SourceIndex",
    "compile_sources",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
