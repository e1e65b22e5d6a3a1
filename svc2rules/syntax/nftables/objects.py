"""The nftables objects svc2rules writes and reads: one table in one family, its sets and maps
(declarations and elements) and its chains (rules, and a hook for base chains).

Modelled on knftables (kubernetes-sigs/knftables): a rule is its text plus a comment, an
element is its key, value and comment, never pre-formatted text; only the writer spells
them. These objects know nothing of Services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, overload

from svc2rules.family import IPFamily

# One set or map element: (key, value, comment). A set element's value is None; an empty
# comment is no comment. A plain tuple rather than a class: the renderer makes hundreds of
# thousands of them at 10k Services, and a tuple costs half of a NamedTuple to build.
Element = tuple[str, str | None, str]
# The part of an element that is not its key: (value, comment).
ElementData = tuple[str | None, str]

Kind = Literal["set", "map", "chain"]


@dataclass(frozen=True, slots=True)
class Hook:
    """What makes a chain a base chain (knftables: Type, Hook, Priority, Policy)."""

    type: str  # filter | nat
    hook: str  # prerouting | input | forward | output | postrouting
    priority: int | str  # a number, or what the kernel lists (`dstnat`, `filter + 1`...)
    policy: str = "accept"
    # Why the chain sits at this priority: written as a `#` line when comments are written.
    note: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    comment: str = ""


@dataclass(slots=True)
class Chain:
    name: str
    comment: str = ""
    hook: Hook | None = None
    rules: list[Rule] = field(default_factory=list)
    kind: ClassVar[Kind] = "chain"

    def add(self, text: str, comment: str = "") -> None:
        self.rules.append(Rule(text, comment))


@dataclass(slots=True)
class Set:
    """A named set (knftables: Set). `type` or `typeof` declares its keys; a map's `type`
    includes ` : <value type>`."""

    name: str
    type: str = ""
    typeof: str = ""
    flags: tuple[str, ...] = ()
    timeout: int | None = None  # seconds
    size: int | None = None
    comment: str = ""
    elements: list[Element] = field(default_factory=list)
    # Declaration lines a reader did not recognise, kept verbatim so that nothing is lost.
    extra: tuple[str, ...] = ()
    kind: ClassVar[Kind] = "set"

    def declaration(self) -> tuple[object, ...]:
        """Everything but the elements (what must match for two sets to be the same object)."""
        fields = (self.type, self.typeof, self.flags, self.timeout, self.size, self.comment, self.extra)
        return (self.kind, self.name, *fields)


@dataclass(slots=True)
class Map(Set):
    """A named map (knftables: Map): elements carry a value."""

    kind: ClassVar[Kind] = "map"


@dataclass(slots=True)
class Table:
    """One table of one family. Sets and maps are written before chains (rules name them),
    each group in the order added."""

    family: IPFamily
    name: str
    comment: str = ""
    collections: list[Set] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    extra: tuple[str, ...] = ()

    def collection(self, collection: Set) -> Set:
        self.collections.append(collection)
        return collection

    def chain(self, chain: Chain) -> Chain:
        self.chains.append(chain)
        return chain

    @overload
    def find(self, kind: Literal["chain"], name: str) -> Chain | None: ...
    @overload
    def find(self, kind: Literal["set", "map"], name: str) -> Set | None: ...
    def find(self, kind: Kind, name: str) -> Set | Chain | None:
        found: list[Set] | list[Chain] = self.chains if kind == "chain" else self.collections
        for obj in found:
            if obj.name == name and obj.kind == kind:
                return obj
        return None
