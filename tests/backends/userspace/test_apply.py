"""The userspace applier on a fake host (xtables emulated): only our chains and jumps are
written, the same rules twice write nothing, a refused table leaves the host as it was, and
cleanup removes every `<prefix>-USERSPACE-*` chain and every jump to one."""

from __future__ import annotations

from typing import Any

import pytest

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import ChangeKind
from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.apply import UserspaceApplier, UserspaceState
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.syntax.xtables import Table
from svc2rules.syntax.xtables.fake import XtablesEmulator
from tests.backends.userspace.helpers import plan_of
from tests.conftest import endpoint_slice, service

OPTIONS: RenderOptions[Addressing] = RenderOptions(backend=Addressing.create("20000-20999"))
WEB = [service(), endpoint_slice()]
# A Service without endpoints: its REJECT is a filter rule.
EMPTY = [service(name="empty", clusterIP="172.30.0.43")]
# Another one with endpoints: a nat rule.
API = [service(name="api", clusterIP="172.30.0.44"), endpoint_slice("api")]
FOREIGN = """\
*nat
:OTHER - [0:0]
-A OTHER -j RETURN
-A PREROUTING -j OTHER
COMMIT
"""


def tables(runner: FakeRunner) -> dict[str, Table]:
    return runner.emulator(XtablesEmulator).tables(IPFamily.IPv4)


def ours(runner: FakeRunner) -> list[str]:
    """Every chain of ours and every rule that mentions one, as `-S` would list them."""
    out = []
    for name, table in sorted(tables(runner).items()):
        out += [f"{name} :{chain}" for chain in table.chains if "-USERSPACE-" in chain]
        out += [f"{name} {rule.line()}" for rule in table.rules if "-USERSPACE-" in rule.line()]
    return out


def applied(runner: FakeRunner, objects: list[dict[str, Any]], generation: str) -> UserspaceState:
    """One apply as the engine runs it (marker, plan, validate, load); the new state."""
    applier = UserspaceApplier(OPTIONS)
    marker = applier.marker(runner, None)
    change = applier.plan_change(
        runner, None, marker is not None, applier.desired(plan_of(objects)), generation
    )
    applier.validate(runner, change)
    applier.load(runner, change)
    assert change.new_state is not None
    return change.new_state


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner(XtablesEmulator)


def test_a_first_apply_loads_our_chains_their_jumps_and_the_generation(runner: FakeRunner) -> None:
    applier = UserspaceApplier(OPTIONS)
    assert applier.marker(runner, None) is None
    change = applier.plan_change(runner, None, False, applier.desired(plan_of(WEB)), "g1")
    assert change.kind is ChangeKind.FULL
    applier.load(runner, change)
    nat = tables(runner)["nat"]
    assert {"SVC2R-USERSPACE-PORTALS", "SVC2R-USERSPACE-NODEPORTS"} <= set(nat.chains)
    assert [r.chain for r in nat.rules if r.spec.endswith("-j SVC2R-USERSPACE-PORTALS")] == [
        "PREROUTING",
        "OUTPUT",
    ]
    assert UserspaceApplier(OPTIONS).marker(runner, None) == "g1"


def test_the_same_rules_again_write_nothing(runner: FakeRunner) -> None:
    state = applied(runner, WEB, "g1")
    applier = UserspaceApplier(OPTIONS)
    assert applier.marker(runner, state) == "g1"
    assert applier.quick_check(runner, state)
    loads = len(runner.loads())
    change = applier.plan_change(runner, state, True, applier.desired(plan_of(WEB)), "g2")
    assert change.kind is ChangeKind.NONE
    assert len(runner.loads()) == loads


def test_untrusted_but_already_as_compiled_only_records_the_generation(runner: FakeRunner) -> None:
    applied(runner, WEB, "g1")
    applier = UserspaceApplier(OPTIONS)
    applier.marker(runner, None)
    change = applier.plan_change(runner, None, False, applier.desired(plan_of(WEB)), "g2")
    assert [step.what for step in change.steps] == ["the apply marker"]


def test_a_change_rewrites_our_chains_keeps_one_jump_each_and_leaves_other_rules(runner: FakeRunner) -> None:
    runner.emulator(XtablesEmulator).load(FOREIGN)
    applied(runner, WEB, "g1")
    applied(runner, [*WEB, *EMPTY], "g2")
    nat, filt = tables(runner)["nat"], tables(runner)["filter"]
    assert "OTHER" in nat.chains and nat.rules_by_chain()["OTHER"] == ["-j RETURN"]
    assert [r.spec for r in nat.rules if r.chain == "PREROUTING"].count("-j OTHER") == 1
    for table, chains in ((nat, ("PREROUTING", "OUTPUT")), (filt, ("INPUT", "FORWARD", "OUTPUT"))):
        jumps = [
            r.chain for r in table.rules if "-j SVC2R-USERSPACE-" in r.spec and "-USERSPACE-" not in r.chain
        ]
        assert sorted(jumps) == sorted(chains)
    assert any("172.30.0.43" in spec for spec in filt.rules_by_chain()["SVC2R-USERSPACE-FILTER"])
    assert UserspaceApplier(OPTIONS).marker(runner, None) == "g2"


def test_a_table_the_kernel_refuses_leaves_the_host_as_it_was(runner: FakeRunner) -> None:
    applied(runner, WEB, "g1")
    before = ours(runner)
    # The filter section (loaded after nat) is refused: nat's new rule must be taken back.
    runner.emulator(XtablesEmulator).refuse("has no endpoints", "Bad argument")
    applier = UserspaceApplier(OPTIONS)
    applier.marker(runner, None)
    change = applier.plan_change(runner, None, True, applier.desired(plan_of([*WEB, *API, *EMPTY])), "g2")
    assert [step.what for step in change.steps][:2] == ["the nat rules", "the filter rules"]
    with pytest.raises(ApplyError, match="the host is as it was"):
        applier.load(runner, change)
    assert ours(runner) == before


def test_cleanup_removes_every_chain_of_ours_and_every_jump_and_nothing_else(runner: FakeRunner) -> None:
    runner.emulator(XtablesEmulator).load(FOREIGN)
    applied(runner, WEB, "g1")
    # Left by an older version or by hand: still ours by its name.
    runner.emulator(XtablesEmulator).load(
        "*nat\n:SVC2R-USERSPACE-OLD - [0:0]\n-A INPUT -j SVC2R-USERSPACE-OLD\nCOMMIT\n"
    )
    applier = UserspaceApplier(OPTIONS)
    change = applier.plan_cleanup(runner, None)
    assert change.kind is ChangeKind.CLEANUP
    applier.validate(runner, change)
    applier.load(runner, change)
    assert ours(runner) == []
    assert tables(runner)["nat"].rules_by_chain()["OTHER"] == ["-j RETURN"]
    assert UserspaceApplier(OPTIONS).plan_cleanup(runner, None).kind is ChangeKind.NONE


def test_cleanup_follows_the_prefix_the_state_names(runner: FakeRunner) -> None:
    other: RenderOptions[Addressing] = RenderOptions(chain_prefix="XY", backend=OPTIONS.backend)
    applier = UserspaceApplier(other)
    change = applier.plan_change(runner, None, False, applier.desired(plan_of(WEB)), "g1")
    applier.load(runner, change)
    assert change.new_state is not None and change.new_state["prefix"] == "XY"
    cleanup = UserspaceApplier(OPTIONS)
    cleanup.load(runner, cleanup.plan_cleanup(runner, change.new_state))
    assert ours(runner) == []


def test_without_jumps_only_our_chains_are_loaded(runner: FakeRunner) -> None:
    options: RenderOptions[Addressing] = RenderOptions(jumps=False, backend=OPTIONS.backend)
    applier = UserspaceApplier(options)
    applier.load(runner, applier.plan_change(runner, None, False, applier.desired(plan_of(WEB)), "g1"))
    assert not [line for line in ours(runner) if " -A PREROUTING " in line or " -A OUTPUT " in line]
    assert any(":SVC2R-USERSPACE-PORTALS" in line for line in ours(runner))


def test_diff_is_empty_once_applied_and_shows_a_change(runner: FakeRunner) -> None:
    applied(runner, WEB, "g1")
    applier = UserspaceApplier(OPTIONS)
    live = applier.dump_live(runner)
    assert live == applier.dump_desired(runner, applier.desired(plan_of(WEB)))
    assert "APPLIED" not in live and "iptables nat: -A PREROUTING" in live
    changed = applier.dump_desired(runner, applier.desired(plan_of([*WEB, *EMPTY])))
    assert changed != live and "172.30.0.43" in changed
