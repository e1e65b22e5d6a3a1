"""The pure planner: which chains a write rewrites, edits in place or removes, and which jumps
it repairs."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.backends.iptables.ops import EditChain, FixJumps, RemoveChain, WriteChain
from svc2rules.backends.iptables.plan import POSITIONAL_MIN_RULES, confirm, diff_table, fix_jumps, positional
from svc2rules.syntax.xtables import Command, DeleteRuleAt, InsertRule, ReplaceRule


def replay(old: Sequence[str], edits: Sequence[Command]) -> list[str]:
    """What iptables does with -R/-D/-I CHAIN N (1-based), in order."""
    rules = list(old)
    for edit in edits:
        if isinstance(edit, ReplaceRule):
            rules[edit.position - 1] = edit.spec
        elif isinstance(edit, DeleteRuleAt):
            del rules[edit.position - 1]
        else:
            assert isinstance(edit, InsertRule) and 1 <= edit.position <= len(rules) + 1
            rules.insert(edit.position - 1, edit.spec)
    return rules


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([f"rule{i}" for i in range(12)]), max_size=30),
    st.lists(st.sampled_from([f"rule{i}" for i in range(12)]), max_size=30),
)
def test_positional_edits_turn_old_into_new(old: list[str], new: list[str]) -> None:
    assert replay(old, positional("C", old, new)) == new


def test_positional_edits_of_random_deletions_and_additions() -> None:
    rng = random.Random(7)
    old = [f"r{i}" for i in range(200)]
    new = [r for r in old if rng.random() > 0.1] + ["x1", "x2"]
    rng.shuffle(new[:20])
    assert replay(old, positional("C", old, new)) == new


def test_one_service_change_in_a_long_chain_is_a_few_edits() -> None:
    old = [f"-d 172.16.{i // 250}.{i % 250} -j SVC-{i}" for i in range(10_000)]
    new = list(old)
    new[4321] = "-d 172.16.17.71 -j SVC-changed"
    new.insert(9000, "-d 172.16.36.1 -j SVC-new")
    del new[10]
    edits = positional("SVC2R-SERVICES", old, new)
    assert len(edits) == 3
    assert replay(old, edits) == new


def rules(n: int, tag: str = "r") -> list[str]:
    return [f"-j {tag}{i}" for i in range(n)]


def stored(chains: dict[str, list[str]]) -> dict[str, str]:
    return {chain: "\n".join(specs) for chain, specs in chains.items()}


def test_unchanged_chains_are_left_alone_and_changed_short_ones_rewritten() -> None:
    old = stored({"A": rules(3), "B": rules(3)})
    assert diff_table(old, {"A": rules(3), "B": rules(4)}, full=False) == [WriteChain("B", tuple(rules(4)))]


def test_a_full_load_rewrites_every_chain() -> None:
    old = stored({"A": rules(40)})
    assert diff_table(old, {"A": rules(40)}, full=True) == [WriteChain("A", tuple(rules(40)))]


def test_a_long_chain_with_a_small_change_is_edited_in_place() -> None:
    long = rules(POSITIONAL_MIN_RULES + 10)
    changed = [*long[:5], "-j new", *long[6:]]
    [op] = diff_table(stored({"A": long}), {"A": changed}, full=False)
    assert op == EditChain("A", (ReplaceRule("A", 6, "-j new"),), len(long), tuple(changed))


def test_a_long_chain_that_changed_a_lot_is_rewritten() -> None:
    long = rules(POSITIONAL_MIN_RULES + 10)
    [op] = diff_table(stored({"A": long}), {"A": rules(POSITIONAL_MIN_RULES + 10, "x")}, full=False)
    assert isinstance(op, WriteChain)


def test_an_edit_holds_only_where_the_kernel_has_the_length_the_state_says() -> None:
    edit = EditChain("A", (ReplaceRule("A", 1, "-j x"),), 40, ("-j x",))
    assert confirm([edit], {"A": 40}) == [edit]
    assert confirm([edit], {"A": 41}) == [WriteChain("A", ("-j x",))]
    assert confirm([edit], {"A": None}) == [WriteChain("A", ("-j x",))]


def test_chains_that_went_are_removed_but_never_a_kept_one() -> None:
    old = stored({"A": [], "GONE": [], "MARKER": []})
    assert diff_table(old, {"A": []}, full=False, keep=frozenset({"MARKER"})) == [RemoveChain("GONE")]


def test_with_removable_only_those_chains_may_go() -> None:
    old = stored({"SHARED": [], "OLD-SVC": [], "OTHER-SVC": []})
    ops = diff_table(old, {"SHARED": []}, full=False, removable=["OLD-SVC", "NEVER-WAS"])
    assert ops == [RemoveChain("OLD-SVC")]


def test_jumps_are_compared_as_arguments_in_any_order() -> None:
    wanted = [("INPUT", '-m comment --comment "a b" -j X'), ("INPUT", "-j Y")]
    assert fix_jumps({"INPUT": ["-j Y", '-m comment --comment "a b"  -j X']}, wanted) == []


def test_a_built_in_chain_with_other_jumps_than_wanted_is_repaired_whole() -> None:
    wanted = [("INPUT", "-j X"), ("INPUT", "-j Y"), ("OUTPUT", "-j X")]
    fixes = fix_jumps({"INPUT": ["-j X"], "FORWARD": ["-j OLD"]}, wanted)
    assert fixes == [
        FixJumps("FORWARD", ("-j OLD",), ()),
        FixJumps("INPUT", ("-j X",), ("-j X", "-j Y")),
        FixJumps("OUTPUT", (), ("-j X",)),
    ]
