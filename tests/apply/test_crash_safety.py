"""A killed `apply` leaves the host with the old ruleset or the new one, never a part of one.

Kills (SIGKILL, and separately SIGTERM) aimed across a full iptables load of 2,000 Services x
10 endpoints, on a first load and over another ruleset, and across an nftables element
update. After each, once our lock is free (whoever takes it must see no load in flight):
every table holds exactly the old or the new ruleset, all tables the same one (never our nat
without our filter), under that ruleset's generation marker; and a next run of the killed
input converges. The kill moments come from a run of the same change measured uncut.

`make test` (and so CI) aims a handful of kills per situation. The long sweep aims dozens,
spread over the whole run, and adds an incremental iptables update:
`SVC2RULES_CRASH_SWEEP=long` (its moments are jittered; `SVC2RULES_CRASH_SEED=<n>` replays one).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .crash_sweep import (
    NEW,
    OLD,
    XT_TABLES,
    Aim,
    Table,
    Window,
    difference,
    judge,
    kill_at,
    launch,
    loaders_in,
    lock_taken,
    nft_tables,
    sweep,
    xt_tables,
)
from .helpers import Host, drop_host, new_host, require_root, synthetic_cluster

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVICES, ENDPOINTS = 2000, 10
LONG = os.environ.get("SVC2RULES_CRASH_SWEEP") == "long"
SEED = int(os.environ.get("SVC2RULES_CRASH_SEED", str(int(time.time()))))
LONG_KILLS = {signal.SIGKILL: 24, signal.SIGTERM: 12}
ISSUE_MOMENT = 1.2  # s after iptables-restore appears: where the issue's kills left nat without filter
each_signal = pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
long_only = pytest.mark.skipif(not LONG, reason="long crash sweep only: SVC2RULES_CRASH_SWEEP=long")

Tables = dict[str, Table]


def cluster(shift: int, without_endpoints: int) -> str:
    """2,000 Services x 10 endpoints; every `without_endpoints`-th Service has none, so our
    filter table holds REJECT rules that differ between two clusters, as the nat does."""
    data = json.loads(synthetic_cluster(SERVICES, ENDPOINTS, shift=shift))
    data["items"] = [
        item
        for item in data["items"]
        if item["kind"] != "EndpointSlice"
        or int(item["metadata"]["labels"]["kubernetes.io/service-name"].split("-")[1]) % without_endpoints
    ]
    return json.dumps(data)


@dataclass
class Reference:
    """A host that applied rulesets "a" and "b" uncut: what each looks like in the kernel and
    how each situation's run went (when its loaders ran), to aim kills at."""

    backend: str
    host: Host
    tmp: Path
    read: Callable[[Host], Tables]
    manifests: dict[str, Path] = field(default_factory=dict)
    rulesets: dict[str, Tables] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)

    def apply_argv(self, host: Host, ruleset: str, *extra: str) -> list[str]:
        return host.apply_argv(self.manifests[ruleset], self.backend, *extra)

    def measure(self, situation: str, ruleset: str, *extra: str, expect: str) -> None:
        """Apply `ruleset` uncut (its output must name the kind of write `expect`ed)."""
        log = self.tmp / f"{situation}-{ruleset}.log"
        run = launch(self.host, self.apply_argv(self.host, ruleset, *extra), log)
        assert run.finish() == 0, run.output()
        assert expect in run.output(), f"{situation}: not the expected write ({expect}):\n{run.output()}"
        self.windows[situation] = Window.of(run)
        live = self.read(self.host)
        if ruleset in self.rulesets:
            assert _contents(live) == _contents(self.rulesets[ruleset]), f"{situation}: another ruleset"
        else:
            self.rulesets[ruleset] = live
        print(f"{self.backend} {situation}: {self.windows[situation]}")

    def holding(self, host: Host) -> tuple[str | None, Tables]:
        live = self.read(host)
        held = [name for name, tables in self.rulesets.items() if _contents(tables) == _contents(live)]
        return (held[0] if held else None), live


def _contents(tables: Tables) -> dict[str, tuple[str, ...]]:
    return {name: table.content for name, table in tables.items()}


def _reference(tmp: Path, backend: str, read: Callable[[Host], Tables]) -> Iterator[Reference]:
    require_root()
    host = new_host(tmp, "reference")
    try:
        ref = Reference(backend, host, tmp, read)
        for name, shift, without in (("a", 0, 97), ("b", 1, 89)):
            ref.manifests[name] = tmp / f"{name}.json"
            ref.manifests[name].write_text(cluster(shift, without))
        yield ref
    finally:
        drop_host(host)


@pytest.fixture(scope="module")
def iptables_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    for ref in _reference(tmp_path_factory.mktemp("crash-iptables"), "iptables", xt_tables):
        ref.measure("first", "a", expect="applied (full: ")
        ref.measure("resync", "b", "--resync", expect="applied (full: ")
        yield ref


@pytest.fixture(scope="module")
def nftables_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    for ref in _reference(tmp_path_factory.mktemp("crash-nftables"), "nftables", nft_tables):
        ref.measure("first", "a", expect="applied (full: ")
        # Only elements change (the endpoints move): the skeleton stays.
        ref.measure("elements", "b", expect="element(s) added)")
        yield ref


# -- one kill ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    aim: Aim
    killed_at: float | None  # s after the process start; None: the run ended first
    loader_at: float | None
    held: str | None  # OLD, NEW or None (a broken host)
    problem: str = ""

    def __str__(self) -> str:
        when = f"killed at {self.killed_at:.2f}s" if self.killed_at is not None else "ended before the kill"
        loader = f"loader at {self.loader_at:.2f}s" if self.loader_at is not None else "no loader seen"
        return f"{self.aim}: {when}, {loader} -> {self.held or 'BROKEN'} {self.problem}"


def kill_once(
    ref: Reference, host: Host, ruleset: str, aim: Aim, old: Tables, extra: tuple[str, ...], log: Path
) -> tuple[Outcome, Tables]:
    run = launch(host, ref.apply_argv(host, ruleset, *extra), log)
    killed = kill_at(run, aim)
    with lock_taken(host):
        in_flight = loaders_in(host)
        live = ref.read(host)
    held, problem = judge(live, old, ref.rulesets[ruleset])
    if in_flight:
        held, problem = None, f"our lock was free while loaders still ran: {in_flight}; {problem}"
    elif not killed and (run.proc.returncode != 0 or held != NEW):
        held, problem = None, f"the uncut run did not load the new ruleset: {run.output()[-500:]}"
    return Outcome(aim, run.killed_at, run.loader_start, held, problem), live


def settle(ref: Reference, host: Host, ruleset: str) -> str:
    """A next run of `ruleset` converges: the host then holds it under one marker, and the
    run after that finds nothing to write. Returns what went wrong ('' if nothing)."""
    first = host.run(ref.apply_argv(host, ruleset), check=False)
    if first.returncode != 0:
        return f"the next run failed: {first.stderr[-500:]}"
    live, want = ref.read(host), ref.rulesets[ruleset]
    wrong = [
        f"{name}: {difference(live[name], want[name])}"
        for name in want
        if live[name].content != want[name].content
    ]
    markers = {table.generation for table in live.values()}
    if wrong or len(markers) != 1 or None in markers:
        return f"the next run did not converge (markers {markers}): {' '.join(wrong)}"
    again = host.run(ref.apply_argv(host, ruleset), check=False)
    if again.returncode != 0 or "no changes" not in again.stderr:
        return f"the run after the next one still wrote: {again.stderr[-500:]}"
    return ""


def verdict(outcomes: list[Outcome], settled: list[str]) -> None:
    report = "\n".join(f"  {outcome}" for outcome in outcomes)
    print(f"seed {SEED}:\n{report}")
    broken = [outcome for outcome in outcomes if outcome.held is None]
    held = {name: sum(o.held == name for o in outcomes) for name in (OLD, NEW)}
    assert not broken and not settled, (
        f"{len(broken)} of {len(outcomes)} kills left a broken host (old {held[OLD]}, new {held[NEW]})"
        + "".join(f"\n- {o}" for o in broken)
        + "".join(f"\n- after the kills: {problem}" for problem in settled)
    )


def _aims(window: Window, sig: signal.Signals, short: list[Aim], issue_moment: bool) -> list[Aim]:
    if not LONG:
        return short
    aims = sweep(window, sig, LONG_KILLS[sig], random.Random(f"{SEED}-{sig.name}"))
    return [Aim(ISSUE_MOMENT, True, sig), *aims] if issue_moment else aims


def sweep_replace(
    ref: Reference,
    sig: signal.Signals,
    situation: str,
    short: list[Aim],
    extra: tuple[str, ...] = (),
    issue_moment: bool = True,
) -> None:
    """Kills on the reference host, each aimed at a run of the ruleset the host does not hold."""
    host = ref.host
    current, old = ref.holding(host)
    if current is None:  # a previous test left it broken
        problem = settle(ref, host, "a")
        assert not problem, problem
        current, old = ref.holding(host)
    assert current is not None
    outcomes: list[Outcome] = []
    settled: list[str] = []
    target = current
    for i, aim in enumerate(_aims(ref.windows[situation], sig, short, issue_moment)):
        target = "b" if current == "a" else "a"
        log = ref.tmp / f"{situation}-{sig.name}-{i}.log"
        outcome, live = kill_once(ref, host, target, aim, old, extra, log)
        outcomes.append(outcome)
        if outcome.held is None:
            if problem := settle(ref, host, target):
                settled.append(problem)
            current, old = target, ref.read(host)
        else:
            current, old = (target if outcome.held == NEW else current), live
    # The killed run's input, once more: whatever the last kill left, the next run converges.
    if problem := settle(ref, host, target):
        settled.append(problem)
    verdict(outcomes, settled)


# -- iptables --------------------------------------------------------------------------------------


@each_signal
def test_killed_first_iptables_load_leaves_nothing_or_everything(
    iptables_reference: Reference, sig: signal.Signals, tmp_path: Path
) -> None:
    """The issue's case: nothing of ours before (first run, reboot, lost state)."""
    ref = iptables_reference
    window = ref.windows["first"]
    short = {
        signal.SIGKILL: [
            Aim(ISSUE_MOMENT, True, sig),
            Aim(0.6 * window.load, True, sig),
            Aim(0.9 * window.load, True, sig),
            Aim(0.5 * window.before_load, False, sig),
        ],
        signal.SIGTERM: [Aim(ISSUE_MOMENT, True, sig), Aim(0.75 * window.load, True, sig)],
    }[sig]
    nothing = {table: Table((), None) for table in XT_TABLES}
    outcomes: list[Outcome] = []
    settled: list[str] = []
    hosts = itertools.count()
    host = new_host(tmp_path, f"first{next(hosts)}")
    try:
        for i, aim in enumerate(_aims(window, sig, short, issue_moment=True)):
            outcome, _ = kill_once(ref, host, "a", aim, nothing, (), tmp_path / f"kill{i}.log")
            outcomes.append(outcome)
            if outcome.held != OLD:
                # Something of ours is loaded: the next run must converge, and the next kill
                # needs a host with nothing of ours again.
                if problem := settle(ref, host, "a"):
                    settled.append(problem)
                drop_host(host)
                host = new_host(tmp_path, f"first{next(hosts)}")
        if problem := settle(ref, host, "a"):
            settled.append(problem)
    finally:
        drop_host(host)
    verdict(outcomes, settled)


@each_signal
def test_killed_full_iptables_reload_leaves_old_or_new(
    iptables_reference: Reference, sig: signal.Signals
) -> None:
    """A full load over another ruleset of ours (--resync; a lost or distrusted state)."""
    window = iptables_reference.windows["resync"]
    short = {
        signal.SIGKILL: [Aim(ISSUE_MOMENT, True, sig), Aim(0.8 * window.load, True, sig)],
        signal.SIGTERM: [Aim(0.6 * window.load, True, sig)],
    }[sig]
    sweep_replace(iptables_reference, sig, "resync", short, ("--resync",))


@long_only
@each_signal
def test_killed_iptables_update_leaves_old_or_new(iptables_reference: Reference, sig: signal.Signals) -> None:
    """An incremental write that changes every Service (a trusted state)."""
    ref = iptables_reference
    if "trusted" not in ref.windows:
        held, _ = ref.holding(ref.host)
        if held is None:
            problem = settle(ref, ref.host, "b")
            assert not problem, problem
            held = "b"
        ref.measure("trusted", "b" if held == "a" else "a", expect="applied (incremental: ")
    sweep_replace(ref, sig, "trusted", [])


# -- nftables ------------------------------------------------------------------------------------


@each_signal
def test_killed_nft_element_update_leaves_old_or_new(
    nftables_reference: Reference, sig: signal.Signals
) -> None:
    """A cut element update must never commit the new marker with part of the edits."""
    window = nftables_reference.windows["elements"]
    short = {
        signal.SIGKILL: [
            Aim(0.3 * window.load, True, sig),
            Aim(0.8 * window.load, True, sig),
            Aim(0.5 * window.before_load, False, sig),
        ],
        signal.SIGTERM: [Aim(0.5 * window.load, True, sig)],
    }[sig]
    sweep_replace(nftables_reference, sig, "elements", short, issue_moment=False)
