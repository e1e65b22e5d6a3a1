"""What earlier compiles learnt, as the compile asks for it (`Memo`), and a memo kept in memory.

A memo answers by fingerprint: for an object, whether it passed validation (and then what
validation and grouping read of it: its identity) and the object itself; for a Service group
(the node config and the Service's objects), its warnings and its objects; for a JSON List
source, where its items lay. The on-disk memo of `apply` is svc2rules.compile.cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from svc2rules.compile.fingerprint import Fingerprint, decode_object
from svc2rules.errors import Diagnostic
from svc2rules.load import RawObject
from svc2rules.load.listing import ListIndex

if TYPE_CHECKING:
    from svc2rules.compile.core import Compilation

# (kind, apiVersion, namespace, name, the Service-name label or ""): what validation and
# grouping read of an object that is known to be valid.
Identity = tuple[str, str, str, str, str]
# Where a list source's items lay, and the list's kind and apiVersion.
SourceIndex = tuple[ListIndex, tuple[str, Any]]
# A Service group's objects: (source, object fingerprint), the Service first.
Members = tuple[tuple[str, Fingerprint], ...]


class Memo(Protocol):
    """What earlier runs learnt, by fingerprint."""

    def identity(self, fingerprint: Fingerprint) -> Identity | None:
        """The identity of the object with this fingerprint if it passed validation before."""
        ...

    def encoded(self, fingerprint: Fingerprint) -> bytes | None:
        """The object with this fingerprint, as InputObjects.encoded gave it (None if unknown)."""
        ...

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        """The warnings of the Service group with this fingerprint, or None if it is unknown."""
        ...

    def members(self, fingerprint: Fingerprint) -> list[RawObject] | None:
        """The objects of the Service group with this fingerprint (the Service first), or None."""
        ...

    def source_index(self, name: str) -> SourceIndex | None:
        """Where the items of a list source lay last time."""
        ...


@dataclass
class MemoryMemo:
    """A Memo kept in memory: what one compile taught (`of`), for the next."""

    objects: dict[Fingerprint, tuple[bytes, Identity]] = field(default_factory=dict)
    groups: dict[Fingerprint, tuple[tuple[Diagnostic, ...], Members]] = field(default_factory=dict)
    sources: dict[str, SourceIndex] = field(default_factory=dict)

    @classmethod
    def of(cls, compiled: Compilation) -> MemoryMemo:
        """What a fingerprinted compile teaches: its input only (nothing older)."""
        objects = compiled.objects
        if objects is None:
            raise ValueError("a compile without fingerprints teaches a memo nothing")
        memo = cls(sources=dict(objects.indexes))
        for i in objects.valid:
            memo.objects[objects.fingerprints[i]] = (objects.encoded(i), objects.identities[i])
        for entry in compiled.services:
            known = compiled.memo.warnings(entry.fingerprint) if compiled.memo is not None else None
            warnings = known if known is not None else compiled.resolution(entry).warnings
            memo.groups[entry.fingerprint] = (warnings, objects.members(entry.members))
        return memo

    def identity(self, fingerprint: Fingerprint) -> Identity | None:
        entry = self.objects.get(fingerprint)
        return None if entry is None else entry[1]

    def encoded(self, fingerprint: Fingerprint) -> bytes | None:
        entry = self.objects.get(fingerprint)
        return None if entry is None else entry[0]

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        entry = self.groups.get(fingerprint)
        return None if entry is None else entry[0]

    def members(self, fingerprint: Fingerprint) -> list[RawObject] | None:
        entry = self.groups.get(fingerprint)
        if entry is None:
            return None
        out = []
        for source, member in entry[1]:
            data = decode_object(self.objects[member][0])
            if data is None:
                return None
            out.append(RawObject(source, data))
        return out

    def source_index(self, name: str) -> SourceIndex | None:
        return self.sources.get(name)
