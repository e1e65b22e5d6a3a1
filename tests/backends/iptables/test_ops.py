"""The sections of a write: their order and cut decide what a crash of the loader can leave."""

from __future__ import annotations

from svc2rules.backends.iptables.ops import (
    FETCH_TABLE_ABOVE,
    ChainOp,
    EditChain,
    FixJumps,
    RemoveChain,
    TablePlan,
    WriteChain,
    WriteMarker,
    section,
    transactions,
)
from svc2rules.syntax.xtables import (
    DeclareChain,
    DeleteChain,
    DeleteRule,
    InsertRule,
    ReplaceRule,
    Rule,
    Transaction,
)

MARKER = WriteMarker("M", "-j RETURN")


def plans(nat_jumps: list[FixJumps], chains: int = 1) -> list[TablePlan]:
    return [
        TablePlan("nat", [WriteChain(f"N{i}", ("-j RETURN",)) for i in range(chains)], nat_jumps, MARKER),
        TablePlan("filter", [WriteChain("F", ("-j RETURN",))], [FixJumps("INPUT", (), ("-j F",))], MARKER),
    ]


def test_a_section_declares_fills_edits_repairs_jumps_and_deletes_last() -> None:
    edit = ReplaceRule("E", 2, "-j DROP")
    ops: list[ChainOp] = [
        WriteChain("A", ("-j B",)),
        RemoveChain("OLD"),
        EditChain("E", (edit,), 40, ()),
        WriteChain("B", ()),
    ]
    jumps = [FixJumps("INPUT", ("-j OLD",), ("-j A",))]
    assert section("filter", ops, jumps, MARKER, fetch_table=False).commands == [
        DeclareChain("A"),
        DeclareChain("B"),
        DeclareChain("M"),
        DeclareChain("OLD"),  # flushed first: its jumps to other chains go at once
        Rule("A", "-j B"),
        Rule("M", "-j RETURN"),
        edit,
        DeleteRule("INPUT", "-j OLD"),
        InsertRule("INPUT", "-j A", 1),
        DeleteChain("OLD"),
    ]


def test_an_incremental_write_is_nat_then_filter_listing_first_only_when_big() -> None:
    small, big = (
        transactions(plans([], chains=1), full=False),
        transactions(plans([], chains=FETCH_TABLE_ABOVE + 1), full=False),
    )
    assert [(t.table, t.fetch_table) for t in small] == [("nat", False), ("filter", False)]
    assert [(t.table, t.fetch_table) for t in big] == [("nat", True), ("filter", False)]


def _inserts(transaction: Transaction) -> list[str]:
    return [c.chain for c in transaction.commands if isinstance(c, InsertRule)]


def _marked(transaction: Transaction) -> bool:
    return DeclareChain("M") in transaction.commands


def test_a_full_load_adds_the_missing_nat_jumps_and_marker_after_filter() -> None:
    missing = FixJumps("PREROUTING", (), ("-j N0",))
    nat, filter_section, jumps = transactions(plans([missing]), full=True)
    assert (nat.table, filter_section.table, jumps.table) == ("nat", "filter", "nat")
    assert nat.fetch_table and filter_section.fetch_table and not jumps.fetch_table
    assert _inserts(nat) == [] and not _marked(nat)
    assert _inserts(filter_section) == ["INPUT"] and _marked(filter_section)
    assert jumps.commands == [DeclareChain("M"), Rule("M", "-j RETURN"), InsertRule("PREROUTING", "-j N0", 1)]


def test_a_full_load_repairs_jumps_already_there_with_the_nat_chains() -> None:
    repaired = FixJumps("PREROUTING", ("-j OLD-VERSION",), ("-j N0",))
    nat, filter_section = transactions(plans([repaired]), full=True)
    assert _inserts(nat) == ["PREROUTING"] and DeleteRule("PREROUTING", "-j OLD-VERSION") in nat.commands
    assert _marked(nat) and filter_section.table == "filter"
