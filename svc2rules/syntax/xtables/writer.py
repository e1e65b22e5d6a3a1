"""The one writer of iptables-restore input (which is also iptables-save's format).

write(transactions)        any sequence of `*TABLE ... COMMIT` sections: `:CHAIN`, `-A`,
                           positional `-I/-R/-D CHAIN N`, `-D CHAIN SPEC`, `-F`, `-X`, `-S`
transaction_of(table)      a whole table: its chains declared (so flushed), its rules
                           appended, its jumps inserted at the top of the built-in chains
write_tables(tables)       the full payload of a renderer (one section per table)
builtin_chains(tables)     sections that only make sure the built-in chains exist
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from svc2rules.syntax.xtables.model import (
    BUILTIN_CHAINS,
    Command,
    DeclareChain,
    DeleteRule,
    Rule,
    Table,
    Transaction,
)
from svc2rules.syntax.xtables.quoting import comment

# The comment of the rule builtin_chains() appends and deletes at once.
PROBE_COMMENT = "svc2rules-probe"
_COMMIT = "COMMIT"


def write(transactions: Iterable[Transaction], *, header: Sequence[str] = ()) -> str:
    """The restore input for `transactions`, in order, after `header` as `#` comment lines."""
    lines = [f"# {text}" for text in header]
    for transaction in transactions:
        lines.append(f"*{transaction.table}")
        if transaction.fetch_table:
            lines.append("-S")
        lines.extend(command.line() for command in transaction.commands)
        lines.append(_COMMIT)
    return "\n".join(lines) + "\n" if lines else ""


def transaction_of(table: Table, *, jumps: bool = True, fetch_table: bool = False) -> Transaction:
    """The section that loads `table` whole: built-in chains with a policy and user-defined
    chains declared, rules appended in order, then (with `jumps`) each jump inserted at the
    top of its built-in chain."""
    commands: list[Command] = [DeclareChain(chain, policy) for chain, policy in table.policies.items()]
    commands.extend(DeclareChain(chain) for chain in table.chains)
    commands.extend(table.rules)
    if jumps:
        commands.extend(jump.insert() for jump in table.jumps)
    return Transaction(table.name, commands, fetch_table)


def write_tables(tables: Iterable[Table], *, jumps: bool = True, header: Sequence[str] = ()) -> str:
    return write((transaction_of(table, jumps=jumps) for table in tables), header=header)


def builtin_chains(tables: Iterable[str]) -> list[Transaction]:
    """Sections that create `tables` and their built-in chains if missing and change nothing
    else: a probe rule appended and deleted in the same transaction. (A section beginning
    with a chain-less `-S` cannot create a missing built-in chain itself.)"""
    out = []
    for table in tables:
        commands: list[Command] = []
        for chain in BUILTIN_CHAINS[table]:
            probe = f"{comment(PROBE_COMMENT)} -j RETURN"
            commands += [Rule(chain, probe), DeleteRule(chain, probe)]
        out.append(Transaction(table, commands))
    return out
