"""What the nftables applier compares: the desired table as objects, and the state.

A table is compared in two parts. Its *skeleton* (the table itself, every set's and map's
declaration, every chain with its rules) is kept as one digest per object, of the writer's
spelling of it: a changed digest means the object changed. Its *elements* are kept whole,
per set or map, as key -> (value, comment): the default layout keeps every per-Service fact
in elements, so most changes are element edits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from svc2rules.backends.applier import BaseState, Change
from svc2rules.backends.nftables.render import preamble
from svc2rules.host.conntrack import UdpFacts
from svc2rules.ir import Plan
from svc2rules.syntax.nftables import Chain, ElementData, Set, Table, Writer

# The set whose comment carries the generation applied last (`nft list set` reads only it).
MARKER_SET = "applied-generation"
MARKER_PREFIX = "svc2rules generation "
# Part of every digest: a state written by a version that digested or kept elements
# differently never matches, so its first run reloads the table whole.
STATE_FORMAT = "nftables-objects-1"

# set or map -> key -> (value, comment)
Elements = dict[str, dict[str, ElementData]]
# "chain NAME" / "set NAME" / "map NAME": what can come and go incrementally.
BlockId = str


def block_id(obj: Set | Chain) -> BlockId:
    return f"{obj.kind} {obj.name}"


def marker(generation: str) -> Set:
    return Set(MARKER_SET, type="inet_service", comment=f"{MARKER_PREFIX}{generation}")


def _digest(text: str) -> str:
    return hashlib.sha256(f"{STATE_FORMAT}\n{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Skeleton:
    """The table without its elements: digests of its own part (`header`) and of each set, map
    and chain (`blocks`), and those objects (to declare the ones that are new)."""

    header: str
    blocks: dict[BlockId, str]
    objects: dict[BlockId, Set | Chain]

    @classmethod
    def of(cls, table: Table, layout: str) -> Skeleton:
        writer = Writer.of(table)
        bare = Table(table.family, table.name, table.comment, extra=table.extra)
        header = _digest(writer.whole_table(bare, preamble(layout)))
        objects: dict[BlockId, Set | Chain] = {block_id(c): c for c in table.collections}
        objects.update((block_id(c), c) for c in table.chains)
        return cls(header, {bid: _digest(writer.block(obj)) for bid, obj in objects.items()}, objects)


def elements_of(table: Table) -> Elements:
    return {
        collection.name: {key: (value, comment) for key, value, comment in collection.elements}
        for collection in table.collections
    }


@dataclass
class Desired:
    """What the host should carry. Planned from the whole plan, `table` and `skeleton` are set;
    planned from the changed Services alone they are None (the skeleton is the state's) and
    `touched` names the only elements that may differ from the state's."""

    plan: Plan
    table_name: str
    layout: str
    table: Table | None
    skeleton: Skeleton | None
    elements: Elements
    udp: UdpFacts
    # With the Services' fingerprints: the state entries the next run plans per Service from.
    by_service: dict[str, Any] | None = None
    touched: dict[str, list[str]] | None = None

    def text(self) -> str:
        """The whole-table script (what `compile` prints)."""
        assert self.table is not None, "planned from the changed Services alone"
        return Writer.of(self.table).whole_table(self.table, preamble(self.layout))


class NftablesState(BaseState, total=False):
    table: str
    header: str
    blocks: dict[BlockId, str]
    elements: Elements
    # Per-Service planning (services.py): each Service's fingerprint, what every Service's
    # elements depend on, the endpoint total, keys offered by several Services, the chains
    # elements lead to, and whether two Services offered one key differently.
    groups: dict[str, str]
    ctx: str
    totals: dict[str, int]
    shared: dict[str, dict[str, int]]
    facts: dict[str, Any]
    conflicts: bool


NftablesChange = Change[Desired, NftablesState]
