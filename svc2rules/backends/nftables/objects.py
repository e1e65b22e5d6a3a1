"""How a layout fills a set or map: first key wins, in a canonical order.

The objects themselves (tables, sets, maps, chains, elements) are the syntax layer's
(`svc2rules.syntax.nftables`); this is the renderer's rule for filling them.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from svc2rules.syntax.nftables import Element, Set

# Told of every element offered to a collection, taken or not: (collection, key, value, comment).
OnAdd = Callable[[str, str, str | None, str], None]


class Collection:
    """A named set or map being filled.

    Keys are unique: the first element added for a key wins and later ones are reported, which is
    exactly how the first matching rule of a kube-proxy chain wins over later duplicates.
    Elements keep the order they were added in (the plan's canonical Service order, so one
    Service's elements stay together), or are sorted by `sort_key` when several Services share
    them (`sort`).
    """

    __slots__ = ("_keys", "_sorted", "on_add", "sort", "target")

    def __init__(self, target: Set, *, sort: bool = False) -> None:
        self.target = target
        self.sort = sort
        self._keys: set[str] = set()
        self._sorted: list[tuple[Any, Element]] = []
        self.on_add: OnAdd | None = None

    @property
    def name(self) -> str:
        return self.target.name

    def add(self, key: str, value: str | None = None, comment: str = "", sort_key: Any = None) -> bool:
        """Add `key [comment] [: value]`; return False (and add nothing) when the key exists."""
        if self.on_add is not None:
            self.on_add(self.target.name, key, value, comment)
        if key in self._keys:
            return False
        self._keys.add(key)
        if self.sort:
            self._sorted.append((sort_key, (key, value, comment)))
        else:
            self.target.elements.append((key, value, comment))
        return True

    def extend_unique(self, elements: list[Element]) -> None:
        """Append elements whose keys the caller guarantees to be new (the hot path: endpoint
        pools, whose keys extend a frontend key that was claimed once)."""
        self.target.elements.extend(elements)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self.target.elements) + len(self._sorted)

    def finish(self) -> Set:
        """The set or map with its elements in their final order."""
        if self.sort:
            self.target.elements = [element for _, element in sorted(self._sorted, key=itemgetter(0))]
        return self.target
