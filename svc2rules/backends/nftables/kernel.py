"""The nftables applier's dealings with the host: nft runs, through the host's runner.

Scripts go to nft as files (`nft -f FILE`): nft reads a file whole before it sends anything,
so a killed apply can not hand the kernel part of a script. A load runs detached and holds
the lock (host/runner.py), and so does `nft -c`: the kernel runs a checked batch and then
aborts it, and a listing taken meanwhile could show a mix of its elements and the live ones.
"""

from __future__ import annotations

import re

from svc2rules.backends.nftables.model import MARKER_PREFIX, MARKER_SET, Desired, NftablesChange
from svc2rules.backends.nftables.render import FAMILY
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.runner import Result, Runner, first_line
from svc2rules.syntax.nftables import Writer, commands, normalised, quoted_strings, read_tables

# How a Service names itself in an element or rule comment (`namespace/name[:port]`).
_SERVICE = re.compile(r"[a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]+)?")
_WORDS = re.compile(r"[\s,{}]+")


def read_marker(runner: Runner, family: IPFamily, table: str) -> str | None:
    """The generation in the marker set's comment (None: no table, no marker)."""
    result = runner.run(commands.list_set(family, table, MARKER_SET))
    if not result.ok:
        return None
    for read in read_tables(result.stdout):
        found = read.find("set", MARKER_SET)
        if found is not None and found.comment.startswith(MARKER_PREFIX):
            return found.comment.removeprefix(MARKER_PREFIX) or None
    return None


def has_table(runner: Runner, family: IPFamily, table: str) -> bool:
    """Whether the table exists (True when nft can not say: cleanup then tries to delete it)."""
    result = runner.run(commands.list_tables(family))
    return not result.ok or any(read.name == table for read in read_tables(result.stdout))


def foreign_table(runner: Runner, family: IPFamily, table: str) -> str | None:
    """One line naming `table` when it exists without our marker set (None: it does not exist,
    it is ours, or nft cannot say)."""
    tables = runner.run(commands.list_tables(family))
    if not tables.ok or not any(read.name == table for read in read_tables(tables.stdout)):
        return None
    if runner.run(commands.list_set(family, table, MARKER_SET)).ok:
        return None
    spelled = Writer(family, table).prefix
    return (
        f"--table {table}: table {spelled} already exists on this host without svc2rules' "
        f"generation marker (set {MARKER_SET}): it is someone else's, and svc2rules neither replaces "
        "nor removes it; choose another --table (or delete that table yourself if it is a leftover)"
    )


def run_script(runner: Runner, payload: str, *, check: bool) -> Result:
    """The payload goes through the runner's unnamed input file: nft reads it whole, and a
    killed `apply` leaves no script behind."""
    return runner.run(
        commands.load(commands.STDIN, check=check), stdin=payload, loader=not check, holds_lock=True
    )


def live_listing(runner: Runner, family: IPFamily, table: str) -> str:
    """Our table as the kernel lists it, made comparable, without the marker ("" if absent)."""
    result = runner.run(commands.list_table(family, table))
    return normalised(result.stdout, skip=(MARKER_SET,)) if result.ok else ""


def scratch_listing(runner: Runner, desired: Desired) -> str:
    """The desired table as the kernel would list it, loaded into a private network namespace
    that disappears with the command."""
    result = runner.run(commands.load_and_list_in_scratch(FAMILY, desired.table_name), stdin=desired.text())
    if not result.ok:
        raise ApplyError(
            f"cannot load the compiled rules in a scratch namespace: {first_line(result.stderr)}"
        )
    return normalised(result.stdout, skip=(MARKER_SET,))


def refusal(what: str, result: Result, change: NftablesChange) -> ApplyError:
    """The error for a refused script: nft's message, the line it names and its Service."""
    text = result.stderr or result.stdout
    location = commands.error_location(text)
    lines = change.payload.splitlines()
    if location is not None and 1 <= location[0] <= len(lines):
        number, message = location
        line = lines[number - 1].strip()
        origin = service_of(line, change.desired)
        shown = line if len(line) <= 200 else line[:197] + "..."
        where = f" (from Service {origin})" if origin else ""
        return ApplyError(f"{what}: {message}; line {number}: {shown}{where}")
    return ApplyError(f"{what}: {first_line(text)}")


def service_of(line: str, desired: Desired | None) -> str | None:
    """The Service behind a line: the one its comment names, else the one with an address on it."""
    for quoted in quoted_strings(line):
        match = _SERVICE.match(quoted)
        if match is not None:
            return match.group(0)
    if desired is None:
        return None
    words = set(_WORDS.split(line))
    for sp in desired.plan.service_ports:
        ips = {sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips}
        if ips & words or any(ep.ip in words for ep in sp.reachable_endpoints):
            return str(sp.key)
    return None
