"""The crash sweep's own rules (tests/apply/crash_sweep.py): what counts as a broken host,
what counts as a loader, where kills are aimed. No root needed."""

from __future__ import annotations

import random
import signal

import pytest

from .crash_sweep import NEW, OLD, Table, Window, is_loader, judge, sweep

NAT_OLD = Table((":SVC2R-SERVICES", "-A SVC2R-SERVICES -d 172.20.0.1/32 -j SVC2R-SVC-OLD"), "g1")
NAT_NEW = Table((":SVC2R-SERVICES", "-A SVC2R-SERVICES -d 172.20.0.1/32 -j SVC2R-SVC-NEW"), "g2")
FILTER_OLD = Table((":SVC2R-SERVICES", "-A SVC2R-SERVICES -d 172.20.0.9/32 -j REJECT"), "g1")
FILTER_NEW = Table((":SVC2R-SERVICES", "-A SVC2R-SERVICES -d 172.20.0.8/32 -j REJECT"), "g2")
OLD_HOST = {"nat": NAT_OLD, "filter": FILTER_OLD}
NEW_HOST = {"nat": NAT_NEW, "filter": FILTER_NEW}
NOTHING = {"nat": Table((), None), "filter": Table((), None)}


def test_a_host_with_the_whole_old_or_new_ruleset_is_whole() -> None:
    assert judge(dict(OLD_HOST), OLD_HOST, NEW_HOST) == (OLD, "")
    assert judge(dict(NEW_HOST), OLD_HOST, NEW_HOST) == (NEW, "")
    # The new ruleset is known by its content: any generation will do, the same in every table.
    renamed = {name: Table(table.content, "g9") for name, table in NEW_HOST.items()}
    assert judge(renamed, OLD_HOST, NEW_HOST) == (NEW, "")


def test_our_nat_without_our_filter_is_named() -> None:
    live = {"nat": NAT_NEW, "filter": Table((), None)}
    held, why = judge(live, NOTHING, NEW_HOST)
    assert held is None
    assert "our new nat without our new filter" in why


def test_tables_of_two_rulesets_are_broken() -> None:
    held, why = judge({"nat": NAT_OLD, "filter": FILTER_NEW}, OLD_HOST, NEW_HOST)
    assert held is None
    assert "nat the old one, filter the new one" in why


def test_a_table_half_written_is_broken() -> None:
    half = Table((":SVC2R-SERVICES",), "g2")
    held, why = judge({"nat": half, "filter": FILTER_NEW}, OLD_HOST, NEW_HOST)
    assert held is None
    assert "table nat is neither" in why
    assert "SVC2R-SVC-" in why  # the differing line is shown


@pytest.mark.parametrize(
    "markers",
    [
        {"nat": "g2", "filter": "g1"},  # the old content under a new marker: the next run trusts it
        {"nat": None, "filter": "g1"},
    ],
)
def test_the_old_ruleset_must_keep_its_marker(markers: dict[str, str | None]) -> None:
    live = {name: Table(table.content, markers[name]) for name, table in OLD_HOST.items()}
    held, why = judge(live, OLD_HOST, NEW_HOST)
    assert held is None
    assert "the old ruleset under markers" in why


@pytest.mark.parametrize(
    "markers",
    [
        {"nat": "g3", "filter": "g4"},  # two loads' worth
        {"nat": "g1", "filter": "g1"},  # the new content under the old marker
        {"nat": None, "filter": None},
    ],
)
def test_the_new_ruleset_must_carry_one_new_marker(markers: dict[str, str | None]) -> None:
    live = {name: Table(table.content, markers[name]) for name, table in NEW_HOST.items()}
    held, why = judge(live, OLD_HOST, NEW_HOST)
    assert held is None
    assert "the new ruleset under markers" in why


@pytest.mark.parametrize(
    ("argv", "loads"),
    [
        (["/usr/sbin/iptables-restore", "-w", "5", "--noflush"], True),
        (["/usr/sbin/iptables-restore", "-w", "5", "--noflush", "--test"], False),
        (["/usr/sbin/nft", "-f", "/tmp/svc2rules-x.nft"], True),
        (["/usr/sbin/nft", "-c", "-f", "/tmp/svc2rules-x.nft"], False),
        (["/usr/sbin/nft", "list", "set", "ip", "svc2rules", "applied-generation"], False),
        (["/usr/sbin/iptables", "-w", "5", "-t", "nat", "-S", "PREROUTING"], False),
        ([], False),
    ],
)
def test_a_loader_is_a_process_that_writes_to_the_kernel(argv: list[str], loads: bool) -> None:
    assert is_loader(argv) is loads


def test_a_sweep_spreads_its_kills_over_the_run_and_the_load() -> None:
    window = Window(before_load=3.0, load=2.0)
    aims = sweep(window, signal.SIGTERM, 24, random.Random(1))
    assert len(aims) == 24
    assert {aim.sig for aim in aims} == {signal.SIGTERM}
    from_start = sorted(aim.after for aim in aims if not aim.on_loader)
    on_loader = sorted(aim.after for aim in aims if aim.on_loader)
    assert len(from_start) == 8 and len(on_loader) == 16
    # Every slot of the run (up to the loader's end) and of the load holds one kill.
    assert all(i * 5.25 / 8 <= after < (i + 1) * 5.25 / 8 for i, after in enumerate(from_start))
    assert all(i * 2.2 / 16 <= after < (i + 1) * 2.2 / 16 for i, after in enumerate(on_loader))
