"""An in-memory iptables / iptables-restore / iptables-save (and their ip6 rows), for tests.

It reads its input with the reader of this package and answers as iptables-nft 1.8.9 does,
with the same exit codes and messages for what svc2rules relies on:

* restore: sections committed one at a time (an error leaves earlier sections committed);
  `--noflush` or a whole-table flush; `--test` parses only and resolves no chain reference;
  `-S` prints the listing to stdout; positional `-I/-R/-D N`, `-D SPEC`, `-F`, `-X`;
  a jump to a missing chain is refused at COMMIT, a `-X` of a chain still in use on its line;
  a section that begins with `-S` cannot create missing built-in chains;
* save (`-t TABLE`) and listings (`-S [CHAIN]`): built-in chains first, then user-defined
  chains by name, as iptables-nft lists them;
* single commands: `-A/-I/-D/-R/-F/-X/-N/-S`.

Rules are kept as written (the kernel's re-spelling of matches is not emulated); `-D SPEC`
compares arguments, not text. `refuse(fragment, message)` makes every rule containing the
fragment fail to parse, as a bad argument does (so `--test` refuses it too).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from svc2rules.family import IPFamily
from svc2rules.syntax.xtables.model import (
    BUILTIN_CHAINS,
    NO_POLICY,
    RULE_COMMANDS,
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    DeleteRuleAt,
    FlushChain,
    InsertRule,
    ListRules,
    ReplaceRule,
    Rule,
    Table,
    Transaction,
)
from svc2rules.syntax.xtables.quoting import join_args, normalize
from svc2rules.syntax.xtables.reader import ReadError, jump_targets, parse_restore
from svc2rules.syntax.xtables.spelling import SPELLINGS, Spelling
from svc2rules.syntax.xtables.writer import transaction_of, write

VERSION = "v1.8.9 (nf_tables)"
# Targets that are not chains (extensions and verdicts svc2rules' rules use, and a few more).
TARGETS = frozenset(
    [
        "ACCEPT",
        "DROP",
        "RETURN",
        "REJECT",
        "QUEUE",
        "NFQUEUE",
        "DNAT",
        "SNAT",
        "MASQUERADE",
        "REDIRECT",
        "MARK",
        "CONNMARK",
        "LOG",
        "NOTRACK",
        "CT",
        "TPROXY",
        "TCPMSS",
        "CLASSIFY",
        "TOS",
        "DSCP",
        "TTL",
        "HL",
        "AUDIT",
        "CHECKSUM",
        "SET",
        "TRACE",
    ]
)
NO_SUCH = "No chain/target/match by that name."


@dataclass
class KernelTable:
    """One table: chains (built-in ones only once created) -> rules, and built-in policies."""

    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    def ensure_builtin(self) -> None:
        for chain in BUILTIN_CHAINS.get(self.name, ()):
            self.chains.setdefault(chain, [])
            self.policies.setdefault(chain, "ACCEPT")

    def order(self) -> list[str]:
        builtin = [c for c in BUILTIN_CHAINS.get(self.name, ()) if c in self.chains]
        return builtin + sorted(c for c in self.chains if c not in self.policies)

    def as_table(self) -> Table:
        out = Table(self.name)
        for chain in self.order():
            if chain in self.policies:
                out.policies[chain] = self.policies[chain]
            else:
                out.chains.append(chain)
            out.rules.extend(Rule(chain, spec) for spec in self.chains[chain])
        return out

    def listing(self, chain: str | None = None) -> str:
        """`-S [CHAIN]`. A whole table's listing always begins with every built-in chain's
        policy, even one not created yet (as iptables-nft prints it)."""
        chains = self.order() if chain is None else [chain]
        builtin = (
            BUILTIN_CHAINS.get(self.name, ()) if chain is None else [c for c in chains if c in self.policies]
        )
        lines = [f"-P {c} {self.policies.get(c, 'ACCEPT')}" for c in builtin]
        lines += [f"-N {c}" for c in chains if c not in self.policies]
        lines += [Rule(c, spec).line() for c in chains for spec in self.chains[c]]
        return "".join(line + "\n" for line in lines)


class Refused(Exception):
    """A command the emulated kernel refuses: the tool's exit code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class XtablesEmulator:
    """The xtables tools of one network namespace, for every family."""

    def __init__(self) -> None:
        self.kernel: dict[IPFamily, dict[str, KernelTable]] = {family: {} for family in SPELLINGS}
        self.refusals: list[tuple[str, str]] = []

    @property
    def commands(self) -> tuple[str, ...]:
        return tuple(command for spelling in SPELLINGS.values() for command in spelling.commands)

    # -- for tests -----------------------------------------------------------------------------

    def refuse(self, fragment: str, message: str) -> None:
        """Rules containing `fragment` fail to parse with `message` (e.g. "Port `99999' not valid")."""
        self.refusals.append((fragment, message))

    def tables(self, family: IPFamily = IPFamily.IPv4) -> dict[str, Table]:
        """What the kernel holds, as the reader would read a save of it."""
        return {name: table.as_table() for name, table in self.kernel[family].items()}

    def save(self, family: IPFamily = IPFamily.IPv4) -> str:
        return self._save(family, None)

    def load(self, text: str, family: IPFamily = IPFamily.IPv4) -> None:
        """Restore `text` with --noflush, as a foreign tool would (raises if refused)."""
        code, _, stderr = self._restore(family, text, noflush=True, test=False)
        if code:
            raise ValueError(stderr)

    # -- the tools -----------------------------------------------------------------------------

    def run(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        spelling = next(s for s in SPELLINGS.values() if argv[0] in s.commands)
        args = list(argv[1:])
        if argv[0] == spelling.restore:
            return self._restore(
                spelling.family,
                stdin or "",
                noflush=bool({"--noflush", "-n"} & set(args)),
                test=bool({"--test", "-t"} & set(args)),
            )
        if argv[0] == spelling.save:
            table = args[args.index("-t") + 1] if "-t" in args else None
            return 0, self._save(spelling.family, table), ""
        return self._command(spelling, args)

    def _table(self, family: IPFamily, name: str) -> KernelTable:
        """A table as a listing or single command finds it: created, with its built-in chains."""
        table = self.kernel[family].setdefault(name, KernelTable(name))
        table.ensure_builtin()
        return table

    def _save(self, family: IPFamily, name: str | None) -> str:
        names = [name] if name else list(self.kernel[family])
        tables = [self._table(family, n).as_table() for n in names]
        header = (f"Generated by the svc2rules emulator of iptables-save {VERSION}",)
        return write((transaction_of(t) for t in tables), header=header)

    # -- iptables-restore ----------------------------------------------------------------------

    def _restore(self, family: IPFamily, text: str, *, noflush: bool, test: bool) -> tuple[int, str, str]:
        tool = SPELLINGS[family].restore
        lines = text.splitlines()
        try:
            sections, failure = parse_restore(text), None
        except ReadError as exc:
            failure = exc
            cut = max(
                (i for i in range(min(exc.line - 1, len(lines))) if lines[i].strip() == "COMMIT"), default=-1
            )
            sections = parse_restore("\n".join(lines[: cut + 1]))
        output: list[str] = []
        for section in sections:
            try:
                self._check_refusals(section)
                if not test:
                    self._commit(family, section, noflush, output)
            except Refused as exc:
                return exc.code, "".join(output), exc.message.replace("TOOL", tool)
        if failure is not None:
            if failure.message.startswith("COMMIT expected"):
                return 1, "".join(output), f"{tool}: COMMIT expected at line {failure.line}\n"
            return 2, "".join(output), _usage(tool, failure.message, failure.line)
        return 0, "".join(output), ""

    def _check_refusals(self, section: Transaction) -> None:
        numbers = section.lines or []
        for index, command in enumerate(section.commands):
            if not isinstance(command, RULE_COMMANDS):
                continue
            for fragment, message in self.refusals:
                if fragment in command.spec:
                    raise Refused(2, _usage("TOOL", message, numbers[index]))

    def _commit(self, family: IPFamily, section: Transaction, noflush: bool, output: list[str]) -> None:
        tables = self.kernel[family]
        before = tables.get(section.table)
        table = copy.deepcopy(before) if before is not None else KernelTable(section.table)
        if not noflush:
            table = KernelTable(section.table)
        if not section.fetch_table:
            table.ensure_builtin()
        else:
            output.append(table.listing())
        deleted: dict[str, int] = {}
        numbers = section.lines or []
        for index, command in enumerate(section.commands):
            number = numbers[index] if index < len(numbers) else 0
            _apply(table, command, number, deleted, output)
        _resolve(table, section, deleted)
        tables[section.table] = table

    # -- iptables ------------------------------------------------------------------------------

    def _command(self, spelling: Spelling, args: list[str]) -> tuple[int, str, str]:
        table_name = "filter"
        words: list[str] = []
        i = 0
        while i < len(args):
            if args[i] == "-w":
                i += 2 if i + 1 < len(args) and args[i + 1].isdigit() else 1
                continue
            if args[i] == "-t":
                table_name = args[i + 1]
                i += 2
                continue
            words.append(args[i])
            i += 1
        table = self._table(spelling.family, table_name)
        tool = spelling.command
        verb, rest = (words[0], words[1:]) if words else ("", [])
        if verb == "-S":
            chain = rest[0] if rest else None
            if chain is not None and chain not in table.chains:
                return (
                    1,
                    "",
                    f"{tool} {VERSION}: chain `{chain}' in table `{table_name}' is incompatible, use 'nft' tool.\n",
                )
            return 0, table.listing(chain), ""
        if verb == "-N":
            if rest[0] in table.chains:
                return 1, "", f"{tool}: Chain already exists.\n"
            table.chains[rest[0]] = []
            return 0, "", ""
        try:
            section = parse_restore(f"*{table_name}\n{verb} {join_args(rest)}\nCOMMIT\n")[0]
            work = copy.deepcopy(table)
            deleted: dict[str, int] = {}
            for command in section.commands:
                _apply(work, command, 0, deleted, [])
            _resolve(work, section, deleted)
        except ReadError as exc:
            return 2, "", f"{tool}: {exc.message}\n"
        except Refused as exc:
            # The restore's message without its line: what the single command prints.
            text = next(line for line in exc.message.splitlines() if line.strip() and not line.endswith(": "))
            return exc.code, "", f"{tool}: {text.split('failed: ')[-1].split(': ', 1)[-1]}\n"
        self.kernel[spelling.family][table_name] = work
        return 0, "", ""


def _usage(tool: str, message: str, line: int) -> str:
    return (
        f"{tool} {VERSION}: {message}\nError occurred at line: {line}\n"
        f"Try `{tool} -h' or '{tool} --help' for more information.\n"
    )


def _failed(number: int, message: str) -> Refused:
    return Refused(1, f"TOOL: line {number} failed: {message}\n")


def _chain(table: KernelTable, chain: str, number: int, verb: str) -> list[str]:
    rules = table.chains.get(chain)
    if rules is None:
        if chain in BUILTIN_CHAINS.get(table.name, ()):
            # A built-in chain a `-S` section could not create.
            raise Refused(
                4,
                f"TOOL {VERSION}: \nline {number}: {verb} failed (No such file or directory): rule in chain {chain}\n",
            )
        raise _failed(number, NO_SUCH)
    return rules


def _apply(
    table: KernelTable, command: Command, number: int, deleted: dict[str, int], output: list[str]
) -> None:
    match command:
        case Rule(chain=chain, spec=spec):
            _chain(table, chain, number, "RULE_APPEND").append(spec)
        case InsertRule(chain=chain, spec=spec, position=position):
            rules = _chain(table, chain, number, "RULE_INSERT")
            if position < 1 or position > len(rules) + 1:
                raise _failed(number, "Index of insertion too big.")
            rules.insert(position - 1, spec)
        case ReplaceRule(chain=chain, position=position, spec=spec):
            rules = _chain(table, chain, number, "RULE_REPLACE")
            if position < 1 or position > len(rules):
                raise _failed(number, NO_SUCH)
            rules[position - 1] = spec
        case DeleteRuleAt(chain=chain, position=position):
            rules = _chain(table, chain, number, "RULE_DELETE")
            if position < 1 or position > len(rules):
                raise _failed(number, NO_SUCH)
            del rules[position - 1]
        case DeleteRule(chain=chain, spec=spec):
            rules = _chain(table, chain, number, "RULE_DELETE")
            wanted = normalize(spec)
            for i, have in enumerate(rules):
                if normalize(have) == wanted:
                    del rules[i]
                    break
            else:
                raise _failed(number, "Bad rule (does a matching rule exist in that chain?).")
        case DeclareChain(chain=chain, policy=policy):
            if chain in BUILTIN_CHAINS.get(table.name, ()):
                # A built-in chain takes the policy and keeps its rules (under --noflush).
                table.chains.setdefault(chain, [])
                table.policies[chain] = policy if policy != NO_POLICY else table.policies.get(chain, "ACCEPT")
            else:
                table.chains[chain] = []
                deleted.pop(chain, None)
        case FlushChain(chain=chain):
            _chain(table, chain, number, "RULE_FLUSH").clear()
        case DeleteChain(chain=chain):
            if table.chains.get(chain) is None or chain in table.policies:
                raise _failed(number, NO_SUCH)
            if table.chains[chain]:
                raise _busy(number, chain)
            del table.chains[chain]
            deleted[chain] = number
        case ListRules(chain=chain):
            if chain is not None:
                _chain(table, chain, number, "LIST")
            output.append(table.listing(chain))


def _busy(number: int, chain: str) -> Refused:
    return Refused(
        4, f"TOOL {VERSION}: \nline {number}: CHAIN_DEL failed (Device or resource busy): chain {chain}\n"
    )


def _resolve(table: KernelTable, section: Transaction, deleted: dict[str, int]) -> None:
    """At COMMIT: a chain deleted while a rule still jumps to it, or a jump to no chain."""
    missing: list[str] = []
    for specs in table.chains.values():
        for spec in specs:
            for target in jump_targets(spec):
                if target in table.chains or target in TARGETS:
                    continue
                if target in deleted:
                    raise _busy(deleted[target], target)
                missing.append(target)
    if missing:
        raise Refused(2, _usage("TOOL", f"Chain '{missing[0]}' does not exist", section.commit_line))
