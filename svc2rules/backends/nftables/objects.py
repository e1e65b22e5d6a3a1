"""A small model of one nftables table: sets/maps with their elements, and chains with their rules.

The renderer fills these; the template only prints them. Elements are kept as text plus a sort
key, so the printed order depends on the elements themselves and never on the input order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from svc2rules.backends.nftables.text import quote_comment


@dataclass(frozen=True, slots=True)
class Hook:
    """What makes a chain a base chain. `why` says why it sits at this priority."""

    type: str  # filter | nat
    hook: str  # prerouting | input | forward | output | postrouting
    priority: int
    why: str

    @property
    def spec(self) -> str:
        return f"type {self.type} hook {self.hook} priority {self.priority}; policy accept;"


@dataclass
class Chain:
    name: str
    comment: str = ""
    hook: Hook | None = None
    rules: list[str] = field(default_factory=list)

    def add(self, rule: str, comment: str = "") -> None:
        self.rules.append(f"{rule} comment {quote_comment(comment)}" if comment else rule)


@dataclass
class Collection:
    """A named set (`kind` "set") or map (`kind` "map").

    Keys are unique: the first element added for a key wins and later ones are reported, which is
    exactly how the first matching rule of a kube-proxy chain wins over later duplicates.
    Elements print in the order they were added (the plan's canonical Service order, so one
    Service's elements stay together), or sorted by `sort_key` when several Services share them.
    """

    kind: str
    name: str
    declaration: tuple[str, ...]  # e.g. ("type ipv4_addr . inet_service : verdict", "flags interval")
    comment: str = ""
    sort: bool = False
    _keys: set[str] = field(default_factory=set)
    _elements: list[tuple[Any, str]] = field(default_factory=list)
    # Told of every add(), taken or not: (collection, key, element text). See GroupedLayout.
    on_add: Callable[[str, str, str], None] | None = field(default=None, compare=False, repr=False)

    def add(self, key: str, value: str | None = None, comment: str = "", sort_key: Any = None) -> bool:
        """Add `key [comment] [: value]`; return False (and add nothing) when the key exists."""
        if key in self._keys:
            if self.on_add is not None:
                self.on_add(self.name, key, _element_text(key, value, comment))
            return False
        self._keys.add(key)
        text = key
        if comment:
            text += f" comment {quote_comment(comment)}"
        if value is not None:
            text += f" : {value}"
        if self.on_add is not None:
            self.on_add(self.name, key, text)
        self._elements.append((sort_key, text))
        return True

    def extend_unique(self, texts: list[str]) -> None:
        """Append finished element lines whose keys the caller guarantees to be new (the hot path:
        endpoint pools, whose keys extend a frontend key that was claimed once)."""
        self._elements.extend((None, text) for text in texts)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._elements)

    @property
    def elements(self) -> list[str]:
        items = sorted(self._elements, key=lambda item: item[0]) if self.sort else self._elements
        return [text for _, text in items]

    @property
    def elements_text(self) -> str:
        """One element per line, each ending with a comma (nft accepts the trailing one), so adding
        or removing an element never touches its neighbours' lines."""
        return "".join(f"\t\t\t{text},\n" for text in self.elements)


def _element_text(key: str, value: str | None, comment: str) -> str:
    text = key
    if comment:
        text += f" comment {quote_comment(comment)}"
    if value is not None:
        text += f" : {value}"
    return text


@dataclass
class Table:
    family: str
    name: str
    comment: str
    collections: list[Collection] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)

    def collection(self, collection: Collection) -> Collection:
        self.collections.append(collection)
        return collection

    def chain(self, chain: Chain) -> Chain:
        self.chains.append(chain)
        return chain
