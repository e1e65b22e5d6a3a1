"""Killing `apply` at chosen moments of a load, and reading back what the host then holds.

`launch` starts `apply` in a host namespace and watches its direct children through /proc:
a *loader* is a kernel writer it starts in the host's namespace (`iptables-restore` without
`--test`, `nft -f` without `-c`; a trial load in a scratch namespace is not one). A kill is
aimed at a moment counted from the process start or from the first loader seen. Where a
kill lands depends on timing (a loaded machine moves it); the verdict never does: it is
read from the kernel once our lock is free.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .helpers import MARKER_CHAIN, PREFIX, Host

# A loader writes to the kernel: an xtables restore that is not a `--test`, an `nft -f` that is
# not a `-c` check (whose batch the kernel aborts); listings write nothing.
XT_LOADERS = ("iptables-restore", "ip6tables-restore")
XT_TABLES = ("nat", "filter")
NFT_MARKER_SET = "applied-generation"
_GENERATION = re.compile(r"svc2rules generation ([A-Za-z0-9-]+)")
POLL = 0.002  # s between two looks at apply's children


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _netns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def is_loader(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    tool, args = os.path.basename(argv[0]), set(argv[1:])
    if tool in XT_LOADERS:
        return not args & {"--test", "-t"}
    if tool == "nft":
        return bool(args & {"-f", "--file"}) and not args & {"-c", "--check"}
    return False


def _pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def loaders_in(host: Host) -> list[str]:
    """Kernel writers running in the host's network namespace, whoever started them."""
    netns = os.stat(f"/run/netns/{host.name}").st_ino
    return [
        " ".join(argv) for pid in sorted(_pids()) if is_loader(argv := _cmdline(pid)) and _netns(pid) == netns
    ]


@dataclass
class Run:
    """One `apply` as the watcher saw it; times are seconds since it started."""

    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    netns: int
    loaders: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> first/last seen
    killed_at: float | None = None
    _strangers: set[int] = field(default_factory=set)  # pids known not to be apply's children

    def watch(self) -> None:
        now = time.monotonic() - self.started
        for pid in _pids() - self._strangers:
            if _parent(pid) != self.proc.pid:
                # A process never becomes apply's child later (orphans go to init).
                self._strangers.add(pid)
            elif is_loader(_cmdline(pid)) and _netns(pid) == self.netns:
                first, _ = self.loaders.get(pid, (now, now))
                self.loaders[pid] = (first, now)

    @property
    def loader_start(self) -> float | None:
        return min((first for first, _ in self.loaders.values()), default=None)

    @property
    def loader_end(self) -> float | None:
        return max((last for _, last in self.loaders.values()), default=None)

    def finish(self, timeout: float = 900.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"apply did not finish within {timeout:.0f} s"
            self.watch()
            time.sleep(POLL)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def launch(host: Host, argv: Sequence[str], log: Path) -> Run:
    netns = os.stat(f"/run/netns/{host.name}").st_ino
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.name, *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    return Run(proc, time.monotonic(), log, netns)


# -- where kills land ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A run measured uncut: its first loader starts `before_load` s after the process and
    the loaders run for `load` s."""

    before_load: float
    load: float

    @classmethod
    def of(cls, run: Run) -> Window:
        start, end = run.loader_start, run.loader_end
        assert start is not None and end is not None, f"no loader seen in the run:\n{run.output()}"
        return cls(start, end - start)

    def __str__(self) -> str:
        return f"{self.before_load:.2f}s before the load, {self.load:.2f}s of load"


@dataclass(frozen=True)
class Aim:
    """A kill `after` seconds past the process start, or past the first loader seen
    (`on_loader`). A run that ends first (or never starts a loader) is not killed."""

    after: float
    on_loader: bool
    sig: signal.Signals = signal.SIGKILL

    def __str__(self) -> str:
        return f"{self.sig.name} {self.after:.2f}s after {'loader' if self.on_loader else 'process'} start"


def sweep(window: Window, sig: signal.Signals, kills: int, rng: random.Random | None = None) -> list[Aim]:
    """`kills` aims spread over the whole run up to the loader's end (a third, from the
    process start) and over the load itself (the rest, from the loader's start, a little
    past its measured end), in a shuffled order; jittered within their slot with `rng`."""
    from_start = kills // 3
    on_loader = kills - from_start
    aims = []
    for i in range(from_start):
        slot = (i + (rng.random() if rng else 0.5)) / from_start
        aims.append(Aim(slot * (window.before_load + window.load) * 1.05, False, sig))
    for i in range(on_loader):
        slot = (i + (rng.random() if rng else 0.5)) / on_loader
        aims.append(Aim(slot * window.load * 1.1, True, sig))
    if rng:
        rng.shuffle(aims)
    return aims


def kill_at(run: Run, aim: Aim, timeout: float = 900.0) -> bool:
    """Kill the run as aimed; False if it ended first."""
    deadline = time.monotonic() + timeout
    while run.proc.poll() is None:
        run.watch()
        anchor = run.loader_start if aim.on_loader else 0.0
        now = time.monotonic() - run.started
        if anchor is not None and now >= anchor + aim.after:
            run.proc.send_signal(aim.sig)
            run.killed_at = now
            run.proc.wait(timeout=60)
            return True
        assert time.monotonic() < deadline, f"apply neither ended nor reached its aim ({aim})"
        time.sleep(POLL)
    return False


# -- our lock ----------------------------------------------------------------------------------


@contextmanager
def lock_taken(host: Host, timeout: float = 600.0) -> Iterator[None]:
    """Hold our lock as the next run would (a loader inherits it from `apply` and keeps it
    until it ends, see svc2rules/host/runner.py)."""
    host.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.state_dir / "lock", os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"our lock still held after {timeout:.0f} s"
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


# -- what the host holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """What we own in one table, canonical (chains by name, rules in kernel order within a
    chain), and the generation its marker names (None: no marker)."""

    content: tuple[str, ...]
    generation: str | None


def xt_table(host: Host, table: str) -> Table:
    chains: set[str] = set()
    rules: dict[str, list[str]] = {}
    jumps: dict[str, list[str]] = {}
    generation = None
    for line in host.save(table).splitlines():
        if line.startswith(":" + PREFIX):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            chain = line.split()[1]
            if chain == MARKER_CHAIN:
                match = _GENERATION.search(line)
                generation = match.group(1) if match else "unreadable"
            elif chain.startswith(PREFIX):
                rules.setdefault(chain, []).append(line)
            elif f"-j {PREFIX}" in line or f"-g {PREFIX}" in line:
                jumps.setdefault(chain, []).append(line)
    chains.discard(MARKER_CHAIN)
    content = [f":{chain}" for chain in sorted(chains)]
    for chain in sorted(rules):
        content += rules[chain]
    for chain in sorted(jumps):
        content += jumps[chain]
    return Table(tuple(content), generation)


def xt_tables(host: Host) -> dict[str, Table]:
    return {table: xt_table(host, table) for table in XT_TABLES}


def nft_tables(host: Host, table: str = "svc2rules") -> dict[str, Table]:
    listed = host.run(["nft", "list", "set", "ip", table, NFT_MARKER_SET], check=False)
    match = _GENERATION.search(listed.stdout) if listed.returncode == 0 else None
    content = tuple(host.ours_nft(table).splitlines())
    return {table: Table(content, match.group(1) if match else None)}


def difference(live: Table, want: Table, limit: int = 8) -> str:
    """How `live` differs from `want`: lines missing and lines extra (a set difference:
    difflib is quadratic on 80k-line tables that share little)."""
    have, wanted = set(live.content), set(want.content)
    missing = [line for line in want.content if line not in have]
    extra = [line for line in live.content if line not in wanted]
    out = [f"{len(live.content)} lines (want {len(want.content)}), marker {live.generation}"]
    for sign, lines in (("-", missing), ("+", extra)):
        out += [f"    {sign} {line[:150]}" for line in lines[:limit]]
        if len(lines) > limit:
            out.append(f"    {sign} ... {len(lines) - limit} more")
    return "\n".join(out)


def distance(live: Table, want: Table) -> int:
    return len(set(live.content) ^ set(want.content))


OLD, NEW = "old", "new"


def judge(live: dict[str, Table], old: dict[str, Table], new: dict[str, Table]) -> tuple[str | None, str]:
    """Which ruleset the host holds, OLD or NEW (None: neither), and what is wrong otherwise.

    Each table must be exactly the old or the new one, all tables the same one (never our
    nat with the filter of another ruleset, or with none), and every marker must name that
    ruleset's generation: the old one's, or one new generation ("new" is only known by its
    content, so the killed run's generation is whatever the tables agree on)."""
    rulesets = {OLD: old, NEW: new}
    fits = {
        table: {name for name, tables in rulesets.items() if live[table].content == tables[table].content}
        for table in live
    }
    broken = [table for table, names in fits.items() if not names]
    if broken:
        lines = []
        for table in broken:
            closer = min(rulesets, key=lambda name: distance(live[table], rulesets[name][table]))
            lines.append(
                f"table {table} is neither the old ruleset nor the new one; against the {closer} one: "
                + difference(live[table], rulesets[closer][table])
            )
        return None, "\n".join(lines)
    common = set.intersection(*fits.values())
    if not common:
        held = ", ".join(f"{table} the {'/'.join(sorted(names))} one" for table, names in fits.items())
        what = f"tables of different rulesets: {held}"
        if fits.get("nat") == {NEW} and fits.get("filter") == {OLD}:
            what += " (our new nat without our new filter)"
        return None, what
    which = OLD if OLD in common else NEW
    markers = {table: live[table].generation for table in live}
    if which == OLD:
        if any(markers[table] != old[table].generation for table in live):
            was = {table: old[table].generation for table in live}
            return None, f"the old ruleset under markers {markers} (they were {was})"
    elif len(set(markers.values())) != 1 or any(
        markers[table] in (None, old[table].generation) for table in live
    ):
        return (
            None,
            f"the new ruleset under markers {markers} (the old ruleset's: {[t.generation for t in old.values()]})",
        )
    return which, ""
