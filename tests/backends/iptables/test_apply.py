"""The iptables applier against an in-memory host (svc2rules.host.fake): what each kind of
apply writes, and what the host holds afterwards. The real kernel judges the same behaviours
in tests/apply; these run without root."""

from __future__ import annotations

import copy
import shlex
from typing import Any

import pytest

from svc2rules.backends import RenderOptions
from svc2rules.backends.iptables.kernel import builtin_chains_text
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.errors import ApplyError
from svc2rules.syntax.xtables import (
    DeclareChain,
    ReplaceRule,
    Table,
    is_builtin,
    jump_targets,
    parse_restore,
    write,
)
from svc2rules.syntax.xtables.fake import XtablesEmulator

from .helpers import Host, cluster, web

NAMES = ChainNames()
FOREIGN = (
    "*nat\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER -j RETURN\nCOMMIT\n"
    "*filter\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n"
)


def fresh(objects: list[dict[str, Any]]) -> str:
    """What a host that only ever saw `objects` holds of ours."""
    host = Host()
    host.apply(objects)
    return host.ours()


def test_a_first_apply_loads_the_whole_ruleset_once() -> None:
    host = Host()
    change = host.apply(cluster(3))
    assert change.kind == "full"
    assert len(host.runner.loads()) == 1
    assert host.ours() == host.applier.dump_desired(host.runner, change.desired)  # type: ignore[arg-type]
    assert host.applier.marker(host.runner, host.state) == host.state["generation"]  # type: ignore[index]


def test_a_second_apply_of_the_same_input_writes_nothing() -> None:
    host = Host()
    host.apply(cluster(3))
    loads = len(host.runner.loads())
    change = host.apply(cluster(3))
    assert (change.kind, change.payload) == ("none", "")
    assert len(host.runner.loads()) == loads


def test_a_one_service_change_writes_only_its_own_chains() -> None:
    host = Host()
    host.apply(cluster(40))
    changed = cluster(40, web7=("10.180.7.1", "10.180.7.9"))
    change = host.apply(changed)
    assert change.kind == "incremental"
    declared = {
        c.chain for t in parse_restore(change.payload) for c in t.commands if isinstance(c, DeclareChain)
    }
    assert all(c.startswith(("SVC2R-SVC-", "SVC2R-SEP-")) or c == NAMES.applied_marker for c in declared)
    assert "10.180.7.9" in change.payload and "10.180.8." not in change.payload
    assert host.ours() == fresh(changed)


def test_a_long_shared_chain_is_edited_in_place() -> None:
    host = Host()
    host.apply(cluster(40))
    changed = cluster(40)
    changed[12:14] = web(7, clusterIP="172.30.1.7")  # web7's SERVICES rule changes
    change = host.apply(changed)
    [nat, _] = parse_restore(change.payload)
    services = [c for c in nat.commands if getattr(c, "chain", None) == NAMES.services]
    position = sorted(f"web{i}" for i in range(1, 41)).index("web7") + 1  # rules in plan order
    [replaced] = services
    assert isinstance(replaced, ReplaceRule) and replaced.position == position
    assert "-d 172.30.1.7 " in replaced.spec
    assert host.ours() == fresh(changed)


def test_adding_a_service_to_a_small_cluster_rewrites_the_shared_chains_it_joins() -> None:
    host = Host()
    host.apply(cluster(2))
    change = host.apply(cluster(3))
    assert change.kind == "incremental"
    assert f":{NAMES.services} - [0:0]" in change.payload  # it references the other Services' chains
    assert host.ours() == fresh(cluster(3))


def test_a_positional_edit_becomes_a_rewrite_when_someone_inserted_into_our_chain() -> None:
    host = Host()
    host.apply(cluster(40))
    host.runner.run(["iptables", "-t", "nat", "-I", NAMES.services, "1", "-d", "192.0.2.1", "-j", "RETURN"])
    removed = cluster(40)[:-2]  # web40 goes: its SERVICES rule would be deleted by position
    change = host.apply(removed)
    assert f":{NAMES.services} - [0:0]" in change.payload
    assert host.ours() == fresh(removed)


def test_a_full_load_never_makes_our_dnat_reachable_before_our_filter_rules() -> None:
    """Every prefix of the load's sections (what a crash of the loader can leave): where a
    built-in nat chain jumps to us, the filter table has our chains and jumps."""
    for before in ([], cluster(2)):
        host = Host()
        if before:
            host.apply(before)
        change = host.plan(cluster(3), trusted=False)
        sections = parse_restore(change.payload)
        prep, _ = builtin_chains_text()
        for count in range(len(sections) + 1):
            crashed = XtablesEmulator()
            crashed.kernel = copy.deepcopy(host.kernel.kernel)
            crashed.load(prep + write(sections[:count]))
            tables = crashed.tables()
            if _reaches_us(tables.get("nat", Table("nat"))) and count:
                filter_table = tables["filter"]
                assert NAMES.services in filter_table.chains and _reaches_us(filter_table), (before, count)
        assert [t.table for t in sections] == (["nat", "filter", "nat"] if not before else ["nat", "filter"])


def _reaches_us(table: Table) -> bool:
    return any(
        is_builtin(table.name, r.chain) and any(NAMES.owns(t) for t in jump_targets(r.spec))
        for r in table.rules
    )


def test_cleanup_removes_every_chain_and_jump_of_ours_and_nothing_else() -> None:
    host = Host()
    host.kernel.load(FOREIGN)
    foreign = host.kernel.tables()
    host.apply(cluster(3))
    change = host.applier.plan_cleanup(host.runner, host.state)
    host.applier.validate(host.runner, change)
    host.applier.load(host.runner, change)
    assert host.kernel.tables() == foreign
    assert host.applier.plan_cleanup(host.runner, None).kind == "none"


def test_a_missing_jump_fails_the_quick_check_and_is_put_back_alone() -> None:
    host = Host()
    host.apply(cluster(3))
    wanted = host.ours()
    [jump] = [r for r in host.tables()["nat"].rules if r.chain == "PREROUTING"]
    host.runner.run(["iptables", "-t", "nat", "-D", "PREROUTING", *shlex.split(jump.spec)])
    assert host.state is not None and not host.applier.quick_check(host.runner, host.state)
    change = host.apply(cluster(3))
    assert change.kind == "incremental" and "1 jump(s) fixed" in change.summary
    assert "0 chain(s) written" in change.summary
    assert host.ours() == wanted


def test_drift_of_our_chains_is_read_back_and_repaired() -> None:
    host = Host()
    host.apply(cluster(3))
    wanted = host.ours()
    host.runner.run(["iptables", "-t", "nat", "-F", NAMES.applied_marker])
    host.runner.run(["iptables", "-t", "nat", "-A", NAMES.services, "-d", "192.0.2.7", "-j", "RETURN"])
    change = host.apply(cluster(3))
    assert change.kind == "full"
    assert host.ours() == wanted


def test_markers_of_two_generations_are_mixed() -> None:
    host = Host()
    host.apply(cluster(1))
    host.runner.run(["iptables", "-t", "filter", "-F", NAMES.applied_marker])
    assert host.applier.marker(host.runner, host.state) == "mixed"


def test_a_refusal_of_the_syntax_check_names_the_line_and_the_service_and_touches_nothing() -> None:
    host = Host()
    host.apply(cluster(2))
    before = host.kernel.tables()
    host.kernel.refuse("10.180.1.9:8080", "Port `bogus' not valid")
    change = host.plan(cluster(2, web1=("10.180.1.9",)))
    with pytest.raises(ApplyError) as raised:
        host.applier.validate(host.runner, change)
    message = str(raised.value)
    assert "iptables-restore --test refused" in message and "line " in message and "shop/web1:http" in message
    assert host.kernel.tables() == before


def test_a_jump_to_a_chain_that_will_not_exist_is_caught_before_the_kernel() -> None:
    host = Host()
    host.apply(cluster(2))
    change = host.plan(cluster(2, web1=("10.180.1.9",)))
    change.payload = change.payload.replace(f"-j {NAMES.mark_masq}", "-j SVC2R-SEP-NOSUCHCHAIN0000", 1)
    with pytest.raises(
        ApplyError, match=r"SVC2R-SEP-NOSUCHCHAIN0000 does not exist.*line .*from Service shop/web1"
    ):
        host.applier.validate(host.runner, change)


def test_a_refusal_at_load_leaves_the_host_as_it_was_and_says_where() -> None:
    host = Host()
    host.apply(cluster(2))
    before = host.kernel.tables()
    change = host.plan(cluster(2, web1=("10.180.1.9",)))
    change.payload = change.payload.replace(f"-j {NAMES.mark_masq}", "-j SVC2R-SEP-NOSUCHCHAIN0000", 1)
    with pytest.raises(ApplyError, match=r"kernel refused.*line .*SVC2R-SEP-NOSUCHCHAIN0000.*shop/web1"):
        host.applier.load(host.runner, change)
    assert host.kernel.tables() == before


def test_the_applier_keeps_nothing_between_calls() -> None:
    host = Host(RenderOptions(chain_prefix="ABC"))
    fields = dict(vars(host.applier))
    host.apply(cluster(2))
    host.applier.marker(host.runner, {"prefix": "OTHER"})
    host.apply(cluster(3))
    host.applier.dump_live(host.runner)
    assert vars(host.applier) == fields
    assert all(c.startswith("ABC-") for c in host.tables()["nat"].chains)
