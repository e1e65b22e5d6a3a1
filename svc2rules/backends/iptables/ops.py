"""The steps of an iptables write, as data: planned by plan.py (pure), arranged here into
xtables transactions, spelled by the syntax layer's writer and loaded by kernel.py.

Each `*table ... COMMIT` section is its own kernel transaction, so the order and the cut
of the sections decide what a reader (or a crash of the loader) can see in between.

An incremental write (the state is trusted): nat, then filter, one section each. nat is the
big section and the one the kernel may still refuse: if it does, nothing has changed. The
filter section was trial-loaded in a scratch namespace first, so it does not fail once nat
went in.

A full load (first apply, drift, --resync) is cut into three sections so that whatever
prefix of them a crash of the loader leaves, no DNAT of ours is reachable without our
filter rules (kube-proxy writes filter before nat for the same reason):

  1. nat: every chain of ours, and the jumps of built-in chains that already jump to us
     (repaired in place) -- but not the jumps a built-in chain does not have yet.
     Between 1 and 2 a reader sees our new nat chains, reachable only where our jumps
     already were (then our previous filter rules are there too); everywhere else the new
     DNATs are not reachable yet.
  2. filter: every chain of ours and its jumps (this section was trial-loaded).
     Between 2 and 3 a reader sees our filter rules in force and our nat rules still
     unreachable from the hooks that had no jump: new Services are not served yet, and
     nothing is served without its filter rules.
  3. nat: the missing jumps, and the nat marker: only now does the marker of nat name the
     new generation, so a run finding the markers of both tables at the new generation
     knows all three sections went in.

With nothing missing (a full load over a complete older ruleset) the third section is not
needed and section 1 carries the nat marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from svc2rules.syntax.xtables import (
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    InsertRule,
    Rule,
    Transaction,
)

# Sections touching more chains than this begin with the chain-less `-S` (Transaction.fetch_table).
FETCH_TABLE_ABOVE = 200
# The table whose rules DNAT (reached through the jumps) and the one holding the filter rules.
NAT, FILTER = "nat", "filter"


@dataclass(frozen=True, slots=True)
class WriteChain:
    """One of our chains declared (so created or flushed) and filled with `rules`."""

    chain: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EditChain:
    """Positional edits turning the chain's rules, as the state has them, into `rules`. They
    are only right if the kernel's chain still has `before` rules (nobody inserted into our
    chain): otherwise the chain is rewritten."""

    chain: str
    edits: tuple[Command, ...]
    before: int
    rules: tuple[str, ...]

    def rewrite(self) -> WriteChain:
        return WriteChain(self.chain, self.rules)


@dataclass(frozen=True, slots=True)
class RemoveChain:
    """One of our chains that goes: flushed first (so its jumps to other chains are gone),
    deleted last."""

    chain: str


@dataclass(frozen=True, slots=True)
class FixJumps:
    """A built-in chain whose jumps to us are not the wanted ones: ours deleted (`remove`, as
    the kernel has them), the wanted ones inserted at the top, in order."""

    chain: str
    remove: tuple[str, ...]
    insert: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WriteMarker:
    """The marker chain of a table, naming the generation written."""

    chain: str
    rule: str


ChainOp = WriteChain | EditChain | RemoveChain


@dataclass
class TablePlan:
    """Everything one table's write does."""

    table: str
    chains: list[ChainOp] = field(default_factory=list)
    jumps: list[FixJumps] = field(default_factory=list)
    marker: WriteMarker | None = None

    @property
    def touched(self) -> int:
        """Chains written, edited or removed (the marker aside)."""
        return len(self.chains)

    def counts(self) -> dict[str, int]:
        return {
            "written": sum(isinstance(op, WriteChain) for op in self.chains),
            "edited": sum(len(op.edits) for op in self.chains if isinstance(op, EditChain)),
            "removed": sum(isinstance(op, RemoveChain) for op in self.chains),
            "jumps": len(self.jumps),
        }


def section(
    table: str,
    chains: Sequence[ChainOp],
    jumps: Sequence[FixJumps],
    marker: WriteMarker | None,
    *,
    fetch_table: bool,
) -> Transaction:
    """One table's section: chains declared (the marker's last), chains that go flushed,
    rules appended, positional edits, jump repairs, and only then the removed chains deleted
    (nothing may jump to them by then)."""
    writes = [op for op in chains if isinstance(op, WriteChain)]
    removed = [op.chain for op in chains if isinstance(op, RemoveChain)]
    commands: list[Command] = [DeclareChain(op.chain) for op in writes]
    if marker is not None:
        commands.append(DeclareChain(marker.chain))
    commands.extend(DeclareChain(chain) for chain in removed)
    commands.extend(Rule(op.chain, spec) for op in writes for spec in op.rules)
    if marker is not None:
        commands.append(Rule(marker.chain, marker.rule))
    commands.extend(edit for op in chains if isinstance(op, EditChain) for edit in op.edits)
    for fix in jumps:
        commands.extend(DeleteRule(fix.chain, spec) for spec in fix.remove)
        commands.extend(InsertRule(fix.chain, spec, 1) for spec in fix.insert)
    commands.extend(DeleteChain(chain) for chain in removed)
    return Transaction(table, commands, fetch_table)


def transactions(plans: Sequence[TablePlan], *, full: bool) -> list[Transaction]:
    """The sections of a write, in load order (see the module doc)."""
    if not full:
        return [
            section(p.table, p.chains, p.jumps, p.marker, fetch_table=p.touched > FETCH_TABLE_ABOVE)
            for p in plans
        ]
    by_table = {p.table: p for p in plans}
    nat, filter_plan = by_table[NAT], by_table[FILTER]
    repaired = [fix for fix in nat.jumps if fix.remove]
    missing = [fix for fix in nat.jumps if not fix.remove]
    out = [
        section(NAT, nat.chains, repaired, None if missing else nat.marker, fetch_table=True),
        section(FILTER, filter_plan.chains, filter_plan.jumps, filter_plan.marker, fetch_table=True),
    ]
    if missing:
        out.append(section(NAT, [], missing, nat.marker, fetch_table=False))
    return out
