"""The one compile path (full, and incremental against a memo) and the memo it consults.

Pure: compile.core, compile.read, compile.memo, compile.fingerprint. The on-disk memo of
`apply` (file I/O, in the state dir) is compile.cache, imported by who needs it.
"""

from svc2rules.compile.core import Compilation, ServiceEntry, compile_sources
from svc2rules.compile.fingerprint import Fingerprint
from svc2rules.compile.memo import Identity, Memo, MemoryMemo, SourceIndex

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
