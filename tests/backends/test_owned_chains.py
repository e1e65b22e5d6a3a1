"""The chains a backend owns beside everyone else's rules (backends/owned_chains.py), on a fake
host: what is ours, the generation marker, a rewrite and its undo, removal and its undo."""

from __future__ import annotations

import pytest

from svc2rules.backends.owned_chains import OwnedChains
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.syntax import xtables
from svc2rules.syntax.xtables.fake import XtablesEmulator

CHAINS = OwnedChains(IPFamily.IPv4, "T-OWN-", "T-OWN-APPLIED", "the test rules")
FOREIGN = "*nat\n:OTHER - [0:0]\n-A OTHER -j RETURN\n-A PREROUTING -j OTHER\nCOMMIT\n"


def desired(target: str = "RETURN") -> list[xtables.Table]:
    nat = xtables.Table("nat")
    nat.chain("T-OWN-A")
    nat.add("T-OWN-A", "-d 1.2.3.4/32", f"-j {target}")
    nat.jumps.append(xtables.Jump("PREROUTING", "-j T-OWN-A"))
    return [nat, xtables.Table("filter")]


@pytest.fixture
def runner() -> FakeRunner:
    runner = FakeRunner(XtablesEmulator)
    runner.emulator(XtablesEmulator).load(FOREIGN)
    return runner


def saved(runner: FakeRunner) -> str:
    return runner.emulator(XtablesEmulator).save()


def test_ours_is_our_chains_and_the_jumps_to_them_not_the_rest(runner: FakeRunner) -> None:
    CHAINS.load(runner, [xtables.transaction_of(t) for t in desired()], "the rules")
    live = CHAINS.read_live(runner)
    assert live.chains["nat"] == {"T-OWN-A": ["-d 1.2.3.4/32 -j RETURN"]}
    assert live.jumps["nat"] == [("PREROUTING", "-j T-OWN-A")]
    assert CHAINS.comparable(live) == CHAINS.comparable(CHAINS.snapshot(desired()))


def test_the_trial_load_lists_the_rules_as_the_kernel_spells_them_and_touches_nothing(
    runner: FakeRunner,
) -> None:
    before = saved(runner)
    spelled = CHAINS.kernel_spelling(runner, desired())
    assert CHAINS.comparable(spelled) == CHAINS.comparable(CHAINS.snapshot(desired()))
    assert saved(runner) == before
    assert runner.calls[-1].scratch


def test_rules_the_kernel_refuses_are_refused_before_the_host_is_touched(runner: FakeRunner) -> None:
    with pytest.raises(ApplyError, match="the kernel refused the test rules"):
        CHAINS.kernel_spelling(runner, desired(target="T-OWN-MISSING"))


def test_a_rewrite_replaces_ours_and_its_undo_puts_them_back(runner: FakeRunner) -> None:
    CHAINS.load(runner, [xtables.transaction_of(t) for t in desired()], "the rules")
    before = saved(runner)
    payload, undo = CHAINS.rewrite(CHAINS.snapshot(desired("ACCEPT")), CHAINS.read_live(runner))
    CHAINS.load(runner, payload, "the rewrite")
    live = CHAINS.read_live(runner)
    assert live.chains["nat"] == {"T-OWN-A": ["-d 1.2.3.4/32 -j ACCEPT"]}
    assert live.jumps["nat"] == [("PREROUTING", "-j T-OWN-A")]
    CHAINS.load(runner, undo, "the undo")
    assert saved(runner) == before


def test_the_marker_carries_the_generation_and_is_never_compared(runner: FakeRunner) -> None:
    live = CHAINS.read_live(runner)
    assert CHAINS.generation(live) is None
    mark, unmark = CHAINS.mark("1700000000-abcd", live)
    CHAINS.load(runner, mark, "the marker")
    marked = CHAINS.read_live(runner)
    assert CHAINS.generation(marked) == "1700000000-abcd"
    assert CHAINS.comparable(marked) == CHAINS.comparable(live)
    CHAINS.load(runner, unmark, "the undo of the marker")
    assert "T-OWN-APPLIED" not in saved(runner)


def test_removal_deletes_every_chain_and_jump_of_ours_and_restoration_undoes_it(runner: FakeRunner) -> None:
    CHAINS.load(runner, [xtables.transaction_of(t) for t in desired()], "the rules")
    CHAINS.load(runner, CHAINS.mark("g1", CHAINS.read_live(runner))[0], "the marker")
    live = CHAINS.read_live(runner)
    CHAINS.load(runner, CHAINS.removal(live), "the removal")
    assert "T-OWN-" not in saved(runner)
    assert "-A PREROUTING -j OTHER" in saved(runner)
    assert CHAINS.removal(CHAINS.read_live(runner)) == []
    CHAINS.load(runner, CHAINS.restoration(live), "the restoration")
    assert CHAINS.comparable(CHAINS.read_live(runner)) == CHAINS.comparable(live)
    assert CHAINS.generation(CHAINS.read_live(runner)) == "g1"
