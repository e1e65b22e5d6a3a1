"""What the kernel holds of ours, read through the runner with the syntax layer's reader, and
the runs that write to it (on the host, or in a scratch network namespace).

Reads are listings (`iptables -S CHAIN`, run side by side) and saves (`iptables-save -t`);
writes are `iptables-restore --noflush` runs. A scratch run (`unshare --net`) starts from an
empty namespace and creates the built-in chains first, in the same restore.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svc2rules.backends.iptables.model import TABLES, StoredChains, generation_of
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.backends.iptables.render import FAMILY
from svc2rules.host.runner import Result, Runner
from svc2rules.syntax.xtables import (
    BUILTIN_CHAINS,
    ListRules,
    Table,
    Transaction,
    builtin_chains,
    jump_targets,
    read_listing,
    read_listings,
    read_tables,
    spelling,
    write,
)

SPELLING = spelling(FAMILY)
SCRATCH_NAMESPACE = ("unshare", "--net", "--")


def targets_us(spec: str, names: ChainNames) -> bool:
    return any(names.owns(target) for target in jump_targets(spec))


def list_chains(runner: Runner, wanted: Sequence[tuple[str, str]]) -> list[list[str] | None]:
    """The rules of each (table, chain), listed side by side (None: the listing failed, e.g.
    the chain does not exist)."""
    results = runner.run_many([SPELLING.list_argv(table, chain) for table, chain in wanted])
    out: list[list[str] | None] = []
    for (_, chain), result in zip(wanted, results, strict=True):
        if not result.ok:
            out.append(None)
            continue
        out.append([rule.spec for rule in read_listing(result.stdout).rules if rule.chain == chain])
    return out


def builtin_chain_listings(tables: Iterable[str]) -> list[tuple[str, str]]:
    return [(table, chain) for table in tables for chain in BUILTIN_CHAINS[table]]


def jumps_to_us(
    listed: Sequence[tuple[str, str]], rules: Sequence[list[str] | None], names: ChainNames
) -> dict[str, dict[str, list[str]]]:
    """table -> built-in chain -> its rules that jump to one of our chains, from listings."""
    out: dict[str, dict[str, list[str]]] = {table: {} for table, _ in listed}
    for (table, chain), specs in zip(listed, rules, strict=True):
        ours = [spec for spec in specs or [] if targets_us(spec, names)]
        if ours:
            out[table][chain] = ours
    return out


def our_jumps(runner: Runner, names: ChainNames) -> dict[str, dict[str, list[str]]]:
    """Rules in built-in chains that jump to one of our chains, as the kernel prints them."""
    # Listed at once: seven listings one after the other cost more than the rest of a
    # one-Service plan.
    listed = builtin_chain_listings(TABLES)
    return jumps_to_us(listed, list_chains(runner, listed), names)


def generation(runner: Runner, names: ChainNames) -> str | None:
    """The generation both tables' markers name; "mixed" when they differ."""
    marker = names.applied_marker
    seen = {generation_of(rules or []) for rules in list_chains(runner, [(t, marker) for t in TABLES])}
    return seen.pop() if len(seen) == 1 else "mixed"


def saved_tables(runner: Runner) -> dict[str, Table]:
    """Our tables as iptables-save prints them (an empty table when the save failed). One save
    of every table: iptables-nft reads the whole ruleset for each save, so a save per table
    costs that read twice (9 s of 22 s at 10k Services)."""
    result = runner.run(SPELLING.save_argv())
    saved = read_tables(result.stdout) if result.ok else {}
    return {table: saved.get(table, Table(table)) for table in TABLES}


@dataclass
class Owned:
    """What we own in the kernel: our chains and their rules, and the rules of other chains
    (the built-in ones, normally) that jump to ours."""

    chains: dict[str, StoredChains] = field(default_factory=dict)  # table -> chain -> rules
    jumps: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> chain -> specs


def owned(tables: dict[str, Table], names: ChainNames) -> Owned:
    out = Owned()
    for name, table in tables.items():
        chains: dict[str, list[str]] = {chain: [] for chain in table.chains if names.owns(chain)}
        jumps: dict[str, list[str]] = {}
        for rule in table.rules:
            if names.owns(rule.chain):
                chains.setdefault(rule.chain, []).append(rule.spec)
            elif targets_us(rule.spec, names):
                jumps.setdefault(rule.chain, []).append(rule.spec)
        out.chains[name] = {chain: "\n".join(rules) for chain, rules in chains.items()}
        out.jumps[name] = jumps
    return out


def owned_lines(table: Table, names: ChainNames) -> list[str]:
    """Our chains (by name) and then our rules and jumps in the kernel's order, for `diff`."""
    marker = names.applied_marker
    declared = sorted(
        f"{table.name}: :{chain}" for chain in table.chains if names.owns(chain) and chain != marker
    )
    rules = [
        f"{table.name}: {rule.line()}"
        for rule in table.rules
        if (names.owns(rule.chain) and rule.chain != marker)
        or (not names.owns(rule.chain) and targets_us(rule.spec, names))
    ]
    return declared + rules


def restore(runner: Runner, text: str, *, test: bool = False) -> Result:
    """Load `text` on the host (a kernel write that runs to its end even if we die), or only
    parse it (`test`)."""
    return runner.run(SPELLING.restore_argv(test=test), stdin=text, loader=not test)


def builtin_chains_text() -> tuple[str, int]:
    """Sections that create our tables' built-in chains (to go before a section opening with
    `-S`), and how many lines they take (the loader's line numbers are offset by them)."""
    prep = write(builtin_chains(TABLES))
    return prep, len(prep.splitlines())


def restore_in_scratch(runner: Runner, text: str) -> Result:
    """Load `text` into a fresh, empty network namespace of its own (thrown away)."""
    return runner.run([*SCRATCH_NAMESPACE, *SPELLING.restore_argv()], stdin=text)


def scratch_failed_to_start(result: Result) -> bool:
    return "unshare" in result.stderr[:40]


def listing_sections(tables: Iterable[str]) -> list[Transaction]:
    """Sections printing each table whole, at that point of a restore."""
    return [Transaction(table, [ListRules()]) for table in tables]


def last_listings(stdout: str, tables: Iterable[str]) -> dict[str, Table]:
    """The last listing printed of each table (the ones listing_sections asked for at the end)."""
    out: dict[str, Table] = {}
    for table in read_listings(stdout):
        out[table.name] = table
    return {name: out.get(name, Table(name)) for name in tables}
