"""The one reader of xtables text: iptables-restore input (so also iptables-save output, which
is the same format) and `iptables -S` listings, into the objects of model.py.

    parse_restore(text)   -> [Transaction]      every command, with its line number
    read_command(line)    -> Command | None     one line of it
    read_tables(text)     -> {table: Table}     a save, or a payload write_tables() made
    read_listing(text)    -> Table              `iptables -S [CHAIN]` output
    read_listings(text)   -> [Table]            the whole-table listings a restore's `-S` printed
"""

from __future__ import annotations

from itertools import pairwise

from svc2rules.syntax.xtables.model import (
    BUILTIN_CHAINS,
    NO_POLICY,
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    DeleteRuleAt,
    FlushChain,
    InsertRule,
    Jump,
    ListRules,
    ReplaceRule,
    Rule,
    Table,
    Transaction,
    is_builtin,
)
from svc2rules.syntax.xtables.quoting import split_args

_COMMIT = "COMMIT"
_JUMPS = frozenset(("-j", "--jump", "-g", "--goto"))
_BLANKED = "\x00"


class ReadError(ValueError):
    """Text that is not what iptables-restore reads; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def _positional(verb: str, rest: str, number: int) -> tuple[str, int | None, str]:
    """`CHAIN [N] [SPEC]` of a -I/-R/-D line."""
    chain, _, tail = rest.partition(" ")
    if not chain:
        raise ReadError(number, f"{verb} needs a chain")
    first, _, remainder = tail.partition(" ")
    if first.isdigit():
        return chain, int(first), remainder
    return chain, None, tail


def _command(line: str, number: int) -> Command:
    verb, _, rest = line.partition(" ")
    if verb == "-A":
        chain, _, spec = rest.partition(" ")
        if not chain:
            raise ReadError(number, "-A needs a chain")
        return Rule(chain, spec)
    if verb in ("-I", "-R", "-D"):
        chain, position, spec = _positional(verb, rest, number)
        if verb == "-I":
            return InsertRule(chain, spec, position if position is not None else 1)
        if verb == "-R":
            if position is None:
                raise ReadError(number, "-R needs a rule number")
            return ReplaceRule(chain, position, spec)
        if position is not None and not spec:
            return DeleteRuleAt(chain, position)
        return DeleteRule(chain, spec)
    if verb in ("-F", "-X", "-S"):
        chain = rest.strip()
        if verb == "-S":
            return ListRules(chain or None)
        if not chain:
            # Chain-less -F/-X act on the whole table: nothing here writes them, and the
            # emulator would have to guess what they mean for foreign chains.
            raise ReadError(number, f"{verb} without a chain is not supported")
        return FlushChain(chain) if verb == "-F" else DeleteChain(chain)
    if line.startswith(":"):
        words = line[1:].split()
        if not words:
            raise ReadError(number, "a chain declaration needs a name")
        return DeclareChain(words[0], words[1] if len(words) > 1 else NO_POLICY)
    raise ReadError(number, f"Bad argument `{verb}'")


def read_command(line: str) -> Command | None:
    """The command of one line of restore input (None: a section line, a comment, or not a
    command at all)."""
    line = line.rstrip()
    if not line or line.startswith(("#", "*")) or line == _COMMIT:
        return None
    try:
        return _command(line, 0)
    except ReadError:
        return None


def parse_restore(text: str) -> list[Transaction]:
    """Every `*TABLE ... COMMIT` section of `text`, in order; comments and blank lines skipped."""
    out: list[Transaction] = []
    current: Transaction | None = None
    numbers: list[int] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if current is not None and line.startswith("-A "):  # most lines: kept fast
            chain, _, spec = line[3:].partition(" ")
            if chain:
                current.commands.append(Rule(chain, spec))
                numbers.append(number)
                continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if current is not None:
                raise ReadError(number, f"COMMIT expected before {line}")
            numbers = []
            current = Transaction(line[1:].strip(), [], lines=numbers)
            continue
        if current is None:
            raise ReadError(number, f"{line.split()[0]} outside of a *table section")
        if line == _COMMIT:
            current.commit_line = number
            out.append(current)
            current = None
            continue
        command = _command(line, number)
        if (
            isinstance(command, ListRules)
            and command.chain is None
            and not (current.commands or current.fetch_table)
        ):
            current.fetch_table = True
            continue
        current.commands.append(command)
        numbers.append(number)
    if current is not None:
        raise ReadError(len(text.splitlines()) + 1, "COMMIT expected")
    return out


def read_tables(text: str) -> dict[str, Table]:
    """The tables a save (or a payload of whole tables, write_tables') holds: declarations,
    appended rules and jumps inserted at the top of built-in chains."""
    tables: dict[str, Table] = {}
    for transaction in parse_restore(text):
        table = tables.setdefault(transaction.table, Table(transaction.table))
        numbers = transaction.lines or []
        for index, command in enumerate(transaction.commands):
            if isinstance(command, Rule):
                table.rules.append(command)
            elif isinstance(command, DeclareChain):
                if is_builtin(table.name, command.chain):
                    table.policies[command.chain] = command.policy
                else:
                    table.chains.append(command.chain)
            elif isinstance(command, InsertRule) and command.position == 1:
                table.jumps.append(Jump(command.chain, command.spec))
            else:
                line = numbers[index] if index < len(numbers) else 0
                raise ReadError(line, f"not part of a whole table: {command.line()}")
    return tables


def read_listing(text: str, table: str = "") -> Table:
    """`iptables -S [CHAIN]` output: `-P` policies, `-N` chains, `-A` rules."""
    out = Table(table)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            out.rules.append(Rule(chain, spec))
        elif line.startswith("-N "):
            out.chains.append(line[3:].strip())
        elif line.startswith("-P "):
            chain, _, policy = line[3:].partition(" ")
            out.policies[chain] = policy.strip()
        elif line:
            raise ReadError(number, f"not a listing line: {line}")
    return out


def read_listings(text: str) -> list[Table]:
    """The whole-table listings a restore's chain-less `-S` commands printed, in order, each
    named after its table: a listing begins with the policies of its table's built-in chains,
    in the kernel's order, which tells the tables apart (and where one listing ends when the
    previous one had no chain of its own)."""
    out: list[Table] = []
    policies: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("-P "):
            chain, _, policy = line[3:].partition(" ")
            policies.append((chain, policy.strip()))
            continue
        if policies:
            out.extend(_listing_heads(policies))
            policies = []
        if not out:
            raise ReadError(number, f"a listing begins with its policies, not {line}")
        if line.startswith("-N "):
            out[-1].chains.append(line[3:].strip())
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            out[-1].rules.append(Rule(chain, spec))
        elif line:
            raise ReadError(number, f"not a listing line: {line}")
    out.extend(_listing_heads(policies))
    return out


def _listing_heads(policies: list[tuple[str, str]]) -> list[Table]:
    """Tables for a run of `-P` lines: consecutive listings' policies, told apart by their
    tables' built-in chains (no table's sequence begins another's)."""
    out: list[Table] = []
    i = 0
    while i < len(policies):
        names = [chain for chain, _ in policies[i:]]
        for table, builtin in BUILTIN_CHAINS.items():
            if tuple(names[: len(builtin)]) == builtin:
                out.append(Table(table, policies=dict(policies[i : i + len(builtin)])))
                i += len(builtin)
                break
        else:
            raise ReadError(0, f"policies of no known table: {' '.join(names)}")
    return out


def jump_targets(spec: str) -> list[str]:
    """The chains (or targets) a rule jumps or goes to."""
    if '"' not in spec:
        return _jump_targets(spec.split()) if "-j" in spec or "-g" in spec else []
    # Quoted parts with blanks (comments, usually) hold no target: blanked out, the rest splits
    # on blanks, which is much cheaper than the tokenizer. Anything unusual (an escape, an
    # empty or unterminated quote, a target glued to a quoted part) takes the tokenizer.
    if "\\" in spec or '""' in spec or spec.count('"') % 2:
        return _jump_targets(split_args(spec))
    parts = spec.split('"')  # the quoted parts are the odd ones
    for i in range(1, len(parts), 2):
        if " " in parts[i] or "\t" in parts[i]:
            parts[i] = _BLANKED
    targets = _jump_targets("".join(parts).split())
    return targets if not any(_BLANKED in t for t in targets) else _jump_targets(split_args(spec))


def _jump_targets(args: list[str]) -> list[str]:
    return [target for word, target in pairwise(args) if word in _JUMPS]


def comment_of(spec: str) -> str | None:
    """The text of a rule's first `--comment`."""
    if "--comment" not in spec:
        return None
    args = split_args(spec)
    for i in range(len(args) - 1):
        if args[i] == "--comment":
            return args[i + 1]
    return None
