"""Checks of a planned write before the host is touched, and the errors a refusal raises.

What is checked is the payload itself (read back with the syntax layer's reader): exactly
what `load` would write.

* `--test` parses the payload but does not resolve chain references, so every reference to
  one of our chains is checked statically (`check_references`): it must exist by then.
* The filter sections are trial-loaded in a scratch network namespace (`trial`), with
  placeholders standing in for the host's chains they edit: the nat sections need no
  trial (nat is written first, and a refused nat section leaves the host unchanged), and
  `--test` skips a big nat section (parsing 10k Services' nat rules twice costs ~25 s).

A refusal names the kernel's message, the offending line and the Service it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from svc2rules.backends.iptables.model import Desired, IptablesChange, StoredChains
from svc2rules.errors import ApplyError, LockBusyError
from svc2rules.host.runner import Result, first_line
from svc2rules.syntax.xtables import (
    RULE_COMMANDS,
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    DeleteRuleAt,
    InsertRule,
    ReplaceRule,
    Rule,
    Transaction,
    comment_of,
    culprit,
    error_line,
    jump_targets,
    lock_busy,
    read_command,
)

_SERVICE = re.compile(r"([a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]+)?)")
_NAT = "nat"


def check_references(change: IptablesChange, transactions: Sequence[Transaction], prefix: str) -> None:
    """Every rule's chain and every jump target of ours exists when its section commits: what
    earlier sections and this one of the same table declare, minus what they delete, and for
    an incremental write the chains the kernel has: those the state knows and those our old
    rules jump to (a write planned from the changed Services knows the other Services' chains
    only as the targets of the shared chains' rules)."""
    ours = prefix + "-"
    incremental = change.kind == "incremental"
    exists: dict[str, set[str]] = {}
    deleted: dict[str, set[str]] = {}
    referenced: dict[str, set[str]] = {}
    for transaction in transactions:
        table = transaction.table
        if table not in exists:
            exists[table] = set(change.old_tables.get(table, {})) if incremental else set()
            deleted[table] = set()
        # Chains declared anywhere in a section exist for its whole transaction.
        exists[table] |= transaction.declared()
        exists[table] -= transaction.deleted()
        deleted[table] = (deleted[table] | transaction.deleted()) - transaction.declared()
        numbers = transaction.lines or []
        for index, command in enumerate(transaction.commands):
            if not isinstance(command, RULE_COMMANDS):
                continue
            for target in (command.chain, *jump_targets(command.spec)):
                if not target.startswith(ours) or target in exists[table]:
                    continue
                if incremental and target not in deleted[table]:
                    if table not in referenced:
                        referenced[table] = _targets(change.old_tables.get(table, {}))
                    if target in referenced[table]:
                        continue
                raise ApplyError(
                    describe(
                        f"chain {target} does not exist in table {table} (the kernel would refuse it)",
                        numbers[index],
                        command.line(),
                        change.desired,
                    )
                )


def _targets(chains: StoredChains) -> set[str]:
    """The chains the rules of `chains` jump to."""
    return {target for text in chains.values() for spec in text.split("\n") for target in jump_targets(spec)}


def tested(transactions: Sequence[Transaction]) -> list[Transaction]:
    """What `--test` parses: everything but the big nat sections (see the module doc)."""
    return [t for t in transactions if not (t.table == _NAT and t.fetch_table)]


def trial(
    transactions: Sequence[Transaction], old_tables: Mapping[str, StoredChains], prefix: str, marker: str
) -> list[Transaction]:
    """The filter sections as a scratch namespace can load them: with our chains they edit or
    jump to (and do not declare) stood in for by placeholders of as many rules as the state
    says they have, without deletions of rules by their text (the jumps: not there) and of
    chains they do not declare."""
    ours = prefix + "-"
    out = []
    for transaction in transactions:
        if transaction.table == _NAT:
            # nat is written first: if the kernel refuses it, nothing has changed yet.
            continue
        commands = transaction.commands
        if all(getattr(c, "chain", None) == marker for c in commands) and not transaction.fetch_table:
            # Only our marker's rule, which every write loads and --test has parsed: a
            # scratch namespace would cost more than anything it could find.
            continue
        declared = transaction.declared()
        body: list[Command] = [
            c
            for c in commands
            if not isinstance(c, DeleteRule) and not (isinstance(c, DeleteChain) and c.chain not in declared)
        ]
        needed: dict[str, int] = {}
        old = old_tables.get(transaction.table, {})
        for command in body:
            if not isinstance(command, Rule | InsertRule | ReplaceRule | DeleteRuleAt):
                continue
            chain = command.chain
            if chain.startswith(ours) and chain not in declared:
                needed[chain] = len(old.get(chain, "").split("\n"))
            if isinstance(command, RULE_COMMANDS):
                for target in jump_targets(command.spec):
                    if target.startswith(ours) and target not in declared:
                        needed.setdefault(target, 0)
        placeholders: list[Command] = [DeclareChain(chain) for chain in needed]
        placeholders += [Rule(chain, "-j RETURN") for chain, count in needed.items() for _ in range(count)]
        fetch = len(needed) + len(declared) > 200
        out.append(Transaction(transaction.table, placeholders + body, fetch))
    return out


def fail(
    what: str, result: Result, lines: Sequence[str], desired: Desired | None, offset: int = 0
) -> ApplyError:
    """The error for a refused run of `lines` (the input's first `offset` lines aside)."""
    message = first_line(result.stderr or result.stdout)
    if lock_busy(message):
        return LockBusyError(f"the xtables lock is busy ({message}); retry later")
    number = error_line(result.stderr)
    if number is not None and lines:
        number -= offset
        if 1 <= number <= len(lines):
            number = culprit(lines, number, message)
            return ApplyError(describe(f"{what}: {message}", number, lines[number - 1], desired))
    return ApplyError(f"{what}: {message}")


def describe(what: str, number: int, line: str, desired: Desired | None) -> str:
    origin = _origin(line, desired)
    shown = line if len(line) <= 200 else line[:197] + "..."
    where = f" (from Service {origin})" if origin else ""
    return f"{what}; line {number}: {shown}{where}"


def _origin(line: str, desired: Desired | None) -> str | None:
    text = comment_of(line)
    match = _SERVICE.match(text) if text else None
    if match:
        return match.group(1)
    if desired is None:
        return None
    origins = desired.origins()
    chain = _chain_of(line)
    if chain and chain in origins:
        return origins[chain]
    for word in line.split():
        if word in origins:
            return origins[word]
    return None


def _chain_of(line: str) -> str | None:
    return getattr(read_command(line), "chain", None)
