"""The nftables applier against the in-memory nft: what it plans, writes and reads, without root.

Each test ends with the fake kernel holding what a fresh whole-table load of the same input
holds (`assert_as_fresh`), so an incremental edit is judged by where it ends, not by its text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from svc2rules.backends import Comments, RenderOptions
from svc2rules.backends.applier import ChangeKind
from svc2rules.backends.nftables.apply import NftablesApplier
from svc2rules.backends.nftables.model import MARKER_SET, Desired, NftablesChange, NftablesState, elements_of
from svc2rules.compile import Compilation, MemoryMemo, compile_sources
from svc2rules.errors import ApplyError
from svc2rules.host.fake import FakeRunner
from svc2rules.load import Source
from svc2rules.syntax.nftables import read_tables
from svc2rules.syntax.nftables.fake import FakeNft
from tests.backends.nftables.helpers import CONFIG, plan_of
from tests.conftest import endpoint, endpoint_slice, service

APPLIER = NftablesApplier(RenderOptions(comments=Comments.ALWAYS))


def cluster(endpoints: int = 2, *, others: int = 3) -> list[dict[str, Any]]:
    """svc1 with `endpoints` endpoints, and `others` Services with two each."""
    objects = [
        service(),
        endpoint_slice(endpoints=[endpoint(f"10.180.0.{i + 1}") for i in range(endpoints)]),
    ]
    for n in range(others):
        objects += [
            service(f"other{n}", clusterIP=f"172.30.1.{n + 1}"),
            endpoint_slice(f"other{n}", endpoints=[endpoint(f"10.181.{n}.1"), endpoint(f"10.181.{n}.2")]),
        ]
    return objects


def desired(objects: list[dict[str, Any]]) -> Desired:
    return APPLIER.desired(plan_of(objects))


def apply(runner: FakeRunner, old: NftablesState | None, want: Desired, generation: str) -> NftablesChange:
    """What the engine does: plan, validate, load; the new state."""
    change = APPLIER.plan_change(runner, old, old is not None, want, generation)
    if change.kind != ChangeKind.NONE:
        APPLIER.validate(runner, change)
        APPLIER.load(runner, change)
    return change


def assert_as_fresh(runner: FakeRunner, want: Desired) -> None:
    fresh = FakeRunner(FakeNft)
    apply(fresh, None, want, "0-fresh")
    assert APPLIER.dump_live(runner) == APPLIER.dump_live(fresh)
    (live,) = read_tables(runner.emulator(FakeNft).dump())
    marker = live.find("set", MARKER_SET)
    assert marker is not None
    live.collections.remove(marker)
    assert elements_of(live) == want.elements


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner(FakeNft)


def test_a_first_apply_loads_the_whole_table_and_the_marker(runner: FakeRunner) -> None:
    want = desired(cluster())
    change = apply(runner, None, want, "1-a")
    assert change.kind == ChangeKind.FULL and change.summary.startswith("full: table svc2rules replaced")
    assert change.payload.startswith(want.text())
    assert [call.argv[:2] for call in runner.loads()] == [("nft", "-f")]
    assert APPLIER.marker(runner, change.new_state) == "1-a"
    assert_as_fresh(runner, want)


def test_the_same_rules_again_write_nothing(runner: FakeRunner) -> None:
    want = desired(cluster())
    state = apply(runner, None, want, "1-a").new_state
    loads = len(runner.loads())
    change = apply(runner, state, desired(cluster()), "2-b")
    assert (change.kind, change.payload, change.new_state) == (ChangeKind.NONE, "", None)
    assert len(runner.loads()) == loads
    assert APPLIER.marker(runner, state) == "1-a"


def test_one_service_s_endpoint_moves_element_by_element(runner: FakeRunner) -> None:
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    moved = cluster()
    moved[1]["endpoints"][0]["addresses"] = ["10.180.9.9"]
    want = desired(moved)
    change = apply(runner, state, want, "2-b")
    assert change.kind == ChangeKind.INCREMENTAL
    assert change.summary == "incremental: 3 element(s) deleted, 3 element(s) added"
    statements = change.payload.splitlines()
    assert statements[:2] == [
        "delete set ip svc2rules applied-generation",
        'add set ip svc2rules applied-generation { type inet_service; comment "svc2rules generation 2-b"; }',
    ]
    assert all(" element " in line for line in statements[2:]), statements
    assert "172.30.1." not in change.payload  # the other Services are not touched
    assert APPLIER.marker(runner, change.new_state) == "2-b"
    assert_as_fresh(runner, want)


def test_a_new_endpoint_count_adds_its_map_and_chain(runner: FakeRunner) -> None:
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    want = desired(cluster(endpoints=3))
    change = apply(runner, state, want, "2-b")
    assert change.kind == ChangeKind.INCREMENTAL
    assert change.summary.endswith("2 set/map/chain(s) added, 0 removed")
    assert_as_fresh(runner, want)
    # And back: the group goes with its last Service.
    assert change.new_state is not None
    back = apply(runner, change.new_state, desired(cluster()), "3-c")
    assert back.summary.endswith("0 set/map/chain(s) added, 2 removed")
    assert_as_fresh(runner, desired(cluster()))


def test_a_changed_rule_reloads_the_whole_table(runner: FakeRunner) -> None:
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    affinity = cluster()
    affinity[0]["spec"]["sessionAffinity"] = "ClientIP"  # new chains and maps: a new skeleton
    want = desired(affinity)
    change = apply(runner, state, want, "2-b")
    assert change.kind == ChangeKind.FULL
    assert_as_fresh(runner, want)


def test_an_untrusted_state_reloads_the_whole_table(runner: FakeRunner) -> None:
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    runner.run(["nft", "flush", "map", "ip", "svc2rules", "service-ips"])  # drift
    change = APPLIER.plan_change(runner, state, False, desired(cluster()), "2-b")
    assert change.kind == ChangeKind.FULL
    APPLIER.load(runner, change)
    assert_as_fresh(runner, desired(cluster()))


def test_a_refused_edit_names_its_line_and_service_and_changes_nothing(runner: FakeRunner) -> None:
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    before = runner.emulator(FakeNft).dump()
    change = APPLIER.plan_change(runner, state, True, desired(cluster(endpoints=1)), "2-b")
    assert change.kind == ChangeKind.INCREMENTAL
    change.payload = change.payload.replace("10.180.0.1 . 8080", "10.180.0.1 . 99999", 1)
    with pytest.raises(ApplyError) as refused:
        APPLIER.validate(runner, change)
    message = str(refused.value)
    assert message.startswith("nft -c refused the ruleset: Value 99999 exceeds valid range 0-65535; line ")
    assert "(from Service ns1/svc1:p80)" in message
    with pytest.raises(ApplyError, match="the host keeps its previous rules"):
        APPLIER.load(runner, change)
    assert runner.emulator(FakeNft).dump() == before
    assert APPLIER.marker(runner, state) == "1-a"


def test_cleanup_removes_our_table_only(runner: FakeRunner) -> None:
    runner.run(["nft", "add", "table", "ip", "bystander"])
    apply(runner, None, desired(cluster()), "1-a")
    change = APPLIER.plan_cleanup(runner, None)
    assert (change.kind, change.payload) == (ChangeKind.CLEANUP, "delete table ip svc2rules\n")
    assert change.summary == "table ip svc2rules removed"
    APPLIER.validate(runner, change)
    APPLIER.load(runner, change)
    assert runner.run(["nft", "list", "tables", "ip"]).stdout == "table ip bystander\n"
    again = APPLIER.plan_cleanup(runner, None)
    assert (again.kind, again.summary) == (ChangeKind.NONE, "nothing of ours on this host")
    assert APPLIER.marker(runner, None) is None


def _compile(objects: list[dict[str, Any]], memo: MemoryMemo | None) -> Compilation:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return compile_sources([Source("cluster.json", data)], CONFIG, memo, fingerprint=memo is None)


def test_a_change_is_planned_from_the_changed_service_alone(runner: FakeRunner) -> None:
    first = _compile(cluster(), None)
    change = APPLIER.plan_compiled(runner, None, False, first, "1-a")
    APPLIER.load(runner, change)
    moved = cluster()
    moved[3]["endpoints"][1]["addresses"] = ["10.181.9.9"]  # other0's second endpoint
    second = _compile(moved, MemoryMemo.of(first))
    assert change.new_state is not None
    by_service = APPLIER.plan_services(runner, change.new_state, second, "2-b")
    assert by_service is not None and by_service.kind == ChangeKind.INCREMENTAL
    assert by_service.touched is not None and set(by_service.touched) == {"elements"}
    assert [e.name for e in second.services if e.resolution is not None] == ["ns1/other0"]
    APPLIER.validate(runner, by_service)
    APPLIER.load(runner, by_service)
    assert_as_fresh(runner, desired(moved))


def test_the_applier_keeps_nothing_between_calls(runner: FakeRunner) -> None:
    fields = dict(vars(APPLIER))
    state = apply(runner, None, desired(cluster()), "1-a").new_state
    APPLIER.marker(runner, {**(state or {}), "table": "elsewhere"})
    APPLIER.plan_cleanup(runner, state)
    assert vars(APPLIER) == fields


def test_diff_reads_our_table_without_the_marker(runner: FakeRunner) -> None:
    assert APPLIER.dump_live(runner) == ""
    apply(runner, None, desired(cluster()), "1-a")
    live = APPLIER.dump_live(runner)
    assert "applied-generation" not in live and "set hairpin {" in live
