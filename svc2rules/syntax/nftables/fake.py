"""An in-memory `nft`, for testing what drives nft without root (knftables' Fake).

It understands what the writer writes (whole-table transactions and incremental edits) and the commands an applier runs: `nft [-c] -f FILE|-`, `nft list
table|set|tables|ruleset`, and one-command forms (`nft delete set ip T S`, `nft add element
...`). It is an emulator for svc2rules.host.fake.FakeRunner. Like the kernel it takes a
script whole or not at all, checks what elements and rules refer to (chains, sets, maps),
refuses to delete what is still referred to, checks element keys and values against their
set's type, and reports errors as nft does (`FILE:LINE:COL-COL: Error: ...`). `dump()` is the
live ruleset, as `nft list ruleset` prints it.

It is a model, not nft: rules are not parsed beyond the names they refer to, and listings are
printed in the writer's words (`priority -100`, `timeout 10800s`), not the kernel's.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from svc2rules.syntax.nftables.objects import Chain, Element, Kind, Set
from svc2rules.syntax.nftables.reader import (
    Block,
    Line,
    ReadError,
    TableText,
    build_chain,
    build_collection,
    parse_element,
    scan_block,
    script_lines,
    split_elements,
)
from svc2rules.syntax.nftables.spelling import SPELLINGS, address_types

_CHAIN_REFERENCE = re.compile(r"\b(?:jump|goto) ([^\s,}]+)")
_SET_REFERENCE = re.compile(r"@([^\s,}]+)")
_OBJECT = re.compile(r"(?:add |delete |flush )?(set|map|chain|element) (\S+) (\S+) (\S+)(.*)$")
_VERDICTS = ("accept", "drop", "return", "continue")
_PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "icmpv6")
ENOENT = "Could not process rule: No such file or directory"
EEXIST = "Could not process rule: File exists"
EBUSY = "Could not process rule: Device or resource busy"


class Outcome(NamedTuple):
    """What a run of nft returned."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


class Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _Collection:
    declaration: Set
    elements: dict[str, Element] = field(default_factory=dict)


@dataclass
class _Table:
    family: str
    name: str
    comment: str = ""
    collections: dict[str, _Collection] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    def collection(self, name: str, line: int) -> _Collection:
        found = self.collections.get(name)
        if found is None:
            raise Refused(line, ENOENT)
        return found

    def references(self) -> Iterator[tuple[str, str]]:
        """Every ("chain" | "set", name) that a rule or an element refers to."""
        for chain in self.chains.values():
            for rule in chain.rules:
                yield from (("chain", name) for name in _CHAIN_REFERENCE.findall(rule.text))
                yield from (("set", name) for name in _SET_REFERENCE.findall(rule.text))
        for collection in self.collections.values():
            for _, value, _ in collection.elements.values():
                if value is not None:
                    yield from (("chain", name) for name in _CHAIN_REFERENCE.findall(value))


class FakeNft:
    """The kernel's tables, and `nft` commands run against them."""

    commands = ("nft",)

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], _Table] = {}

    # -- commands --------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], stdin: str | None = None) -> Outcome:
        """Run `nft ARGS...` (argv[0] is nft)."""
        args = list(argv[1:])
        check = False
        while args and args[0] in ("-c", "--check"):
            check = True
            args.pop(0)
        if args[:1] == ["-f"] and len(args) == 2:
            path = args[1]
            if path == "-":
                script = stdin or ""
            else:
                try:
                    with open(path, encoding="utf-8") as fh:
                        script = fh.read()
                except OSError as exc:
                    return Outcome(1, "", f"Error: Could not process rule: {exc.strerror}\n")
            return self.load(script, check=check, source=path if path != "-" else "/dev/stdin")
        if args[:1] == ["list"]:
            return self._list(args[1:])
        return self.load(" ".join(args), check=check, source="")

    def load(self, script: str, *, check: bool = False, source: str = "-") -> Outcome:
        """One transaction: every statement of `script`, or (on an error) none."""
        tables = copy.deepcopy(self.tables)
        lines = script.splitlines()
        try:
            self._execute(tables, script_lines(script))
        except (Refused, ReadError) as exc:
            number = exc.line
            text = lines[number - 1] if 1 <= number <= len(lines) else ""
            where = f"{source}:{number}:1-{max(len(text), 1)}: " if source else ""
            return Outcome(1, "", f"{where}Error: {exc.message}\n{text}\n")
        if not check:
            self.tables = tables
        return Outcome(0)

    def dump(self) -> str:
        """The live ruleset, as `nft list ruleset` prints it."""
        return _listing(self.tables, ["ruleset"]) or ""

    # -- executing a script ------------------------------------------------------------------------

    def _execute(self, tables: dict[tuple[str, str], _Table], lines: list[Line]) -> None:
        index = 0
        while index < len(lines):
            number, text = lines[index]
            index += 1
            if text.startswith(("table ", "add table ")):
                scanned, index = scan_block(lines, index, (number, text))
                self._table_statement(tables, scanned)
                continue
            # A one-line statement may still open braces it closes on a later line.
            while _open(text) > 0 and index < len(lines):
                text += " " + lines[index][1]
                index += 1
            self._statement(tables, number, text)

    def _table_statement(self, tables: dict[tuple[str, str], _Table], scanned: TableText) -> None:
        table = tables.setdefault((scanned.family, scanned.name), _Table(scanned.family, scanned.name))
        for number, text in scanned.lines:
            if text.startswith('comment "'):
                table.comment = text[len('comment "') : -1]
            else:
                raise Refused(number, f"syntax error, unexpected {text.split()[0]}")
        # As nft does within one block: objects first, then rules and elements that name them.
        for block in scanned.blocks:
            if block.kind == "chain":
                table.chains.setdefault(block.name, Chain(block.name))
            else:
                declaration = build_collection(Block(block.kind, block.name, block.line, block.lines))
                self._declare(table, declaration, block.line)
        for block in scanned.blocks:
            if block.kind == "chain":
                self._add_chain(table, build_chain(block), block)
        for block in scanned.blocks:
            if block.kind != "chain" and block.elements:
                self._add_elements(table, block.name, block.elements)

    def _statement(self, tables: dict[tuple[str, str], _Table], number: int, text: str) -> None:
        if text.startswith("delete table "):
            words = text.split()
            if len(words) != 4 or tables.pop((words[2], words[3]), None) is None:
                raise Refused(number, ENOENT)
            return
        match = _OBJECT.match(text)
        if match is None:
            raise Refused(number, f"syntax error, unexpected {text.split()[0] if text else 'end of file'}")
        verb = text.split(" ", 1)[0] if text.startswith(("add ", "delete ", "flush ")) else "add"
        kind, family, table_name, name, rest = match.groups()
        table = tables.get((family, table_name))
        if table is None:
            raise Refused(number, ENOENT)
        rest = rest.strip()
        if kind == "element":
            items = split_elements([(number, rest.removeprefix("{"))])
            if verb == "add":
                self._add_elements(table, name, items)
            else:
                collection = table.collection(name, number)
                for line, item in items:
                    element = parse_element(item)
                    if element is None or collection.elements.pop(element[0], None) is None:
                        raise Refused(line, ENOENT)
        elif verb == "delete":
            self._delete(table, kind, name, number)
        elif verb == "flush":
            if kind == "chain":
                self._chain(table, name, number).rules.clear()
            else:
                table.collection(name, number).elements.clear()
        elif kind == "chain":
            lines = [(number, part.strip()) for part in rest.strip("{} ").split(";") if part.strip()]
            self._add_chain(table, build_chain(Block("chain", name, number, lines)), None)
        else:
            lines = [(number, part.strip()) for part in rest.strip("{} ").split(";") if part.strip()]
            self._declare(table, build_collection(Block(cast(Kind, kind), name, number, lines)), number)

    def _declare(self, table: _Table, declaration: Set, line: int) -> None:
        if not declaration.type and not declaration.typeof:
            raise Refused(line, f"set {declaration.name} has no type")
        present = table.collections.get(declaration.name)
        if present is None:
            table.collections[declaration.name] = _Collection(declaration)
        elif present.declaration.declaration() != declaration.declaration():
            raise Refused(line, EEXIST)

    def _chain(self, table: _Table, name: str, line: int) -> Chain:
        chain = table.chains.get(name)
        if chain is None:
            raise Refused(line, ENOENT)
        return chain

    def _add_chain(self, table: _Table, chain: Chain, block: Block | None) -> None:
        present = table.chains.setdefault(chain.name, Chain(chain.name))
        present.comment = chain.comment or present.comment
        present.hook = chain.hook or present.hook
        rule_lines = [number for number, text in (block.lines if block else []) if not _is_head(text)]
        for index, rule in enumerate(chain.rules):
            line = rule_lines[index] if index < len(rule_lines) else (block.line if block else 0)
            for name in _CHAIN_REFERENCE.findall(rule.text):
                if name not in table.chains:
                    raise Refused(line, ENOENT)
            for name in _SET_REFERENCE.findall(rule.text):
                if name not in table.collections:
                    raise Refused(line, ENOENT)
            present.rules.append(rule)

    def _add_elements(self, table: _Table, name: str, items: list[Line]) -> None:
        for line, text in items:
            collection = table.collection(name, line)
            element = parse_element(text)
            if element is None:
                raise Refused(line, "syntax error, unexpected expires")
            _check_element(table, collection.declaration, element, line)
            present = collection.elements.get(element[0])
            if present is None:
                collection.elements[element[0]] = element
            elif present[1] != element[1]:
                raise Refused(line, EEXIST)

    def _delete(self, table: _Table, kind: str, name: str, line: int) -> None:
        if kind == "chain":
            self._chain(table, name, line)
            if ("chain", name) in set(table.references()):
                raise Refused(line, EBUSY)
            del table.chains[name]
            return
        collection = table.collection(name, line)
        if collection.declaration.kind != kind:
            raise Refused(line, ENOENT)
        if ("set", name) in set(table.references()):
            raise Refused(line, EBUSY)
        del table.collections[name]

    # -- listing ---------------------------------------------------------------------------------

    def _list(self, args: list[str]) -> Outcome:
        listed = _listing(self.tables, args)
        if listed is None:
            return Outcome(1, "", f"Error: No such file or directory\nlist {' '.join(args)}\n")
        return Outcome(0, listed)


def _listing(tables: dict[tuple[str, str], _Table], args: list[str]) -> str | None:
    """What `nft list ARGS` prints (None: no such object)."""
    what = args[0] if args else ""
    if what == "ruleset":
        return "".join(_print_table(table) for table in tables.values())
    if what == "tables":
        family = args[1] if len(args) > 1 else None
        return "".join(f"table {f} {n}\n" for f, n in tables if family in (None, f))
    table = tables.get((args[1], args[2])) if len(args) >= 3 else None
    if table is None:
        return None
    if what == "table" and len(args) == 3:
        return _print_table(table)
    if what in ("set", "map") and len(args) == 4:
        collection = table.collections.get(args[3])
        if collection is not None and collection.declaration.kind == what:
            return f"table {table.family} {table.name} {{\n{_print_collection(collection)}}}\n"
    return None


def _print_table(table: _Table) -> str:
    blocks = [_print_collection(c) for c in table.collections.values()]
    blocks += [_print_chain(c) for c in table.chains.values()]
    head = f'\tcomment "{table.comment}"\n' if table.comment else ""
    return f"table {table.family} {table.name} {{\n{head}" + "\n".join(blocks) + "}\n"


def _open(text: str) -> int:
    return text.count("{") - text.count("}")


def _is_head(text: str) -> bool:
    """A chain's comment or hook line (not a rule)."""
    return text.startswith('comment "') or (text.startswith("type ") and " hook " in text)


def _print_collection(collection: _Collection) -> str:
    declaration = collection.declaration
    lines = [f"\t{declaration.kind} {declaration.name} {{"]
    lines.append(f"\t\ttypeof {declaration.typeof}" if declaration.typeof else f"\t\ttype {declaration.type}")
    if declaration.flags:
        lines.append(f"\t\tflags {','.join(declaration.flags)}")
    if declaration.timeout is not None:
        lines.append(f"\t\ttimeout {declaration.timeout}s")
    if declaration.size is not None:
        lines.append(f"\t\tsize {declaration.size}")
    if declaration.comment:
        lines.append(f'\t\tcomment "{declaration.comment}"')
    elements = []
    for key, value, comment in collection.elements.values():
        text = f'{key} comment "{comment}"' if comment else key
        elements.append(text if value is None else f"{text} : {value}")
    if elements:
        lines.append("\t\telements = { " + ",\n\t\t\t     ".join(elements) + " }")
    lines.append("\t}")
    return "".join(f"{line}\n" for line in lines)


def _print_chain(chain: Chain) -> str:
    lines = [f"\tchain {chain.name} {{"]
    if chain.comment:
        lines.append(f'\t\tcomment "{chain.comment}"')
    if chain.hook is not None:
        hook = chain.hook
        lines.append(f"\t\ttype {hook.type} hook {hook.hook} priority {hook.priority}; policy {hook.policy};")
    for rule in chain.rules:
        lines.append(f'\t\t{rule.text} comment "{rule.comment}"' if rule.comment else f"\t\t{rule.text}")
    lines.append("\t}")
    return "".join(f"{line}\n" for line in lines)


# -- element types -----------------------------------------------------------------------------------


def _types(declaration: Set) -> tuple[list[str], str | None]:
    """The data type of each part of the key, and of the value (None for a set)."""
    if declaration.typeof:
        key, _, value = declaration.typeof.partition(" : ")
        return [_expression_type(part) for part in key.split(" . ")], (
            " . ".join(_expression_type(part) for part in value.split(" . ")) if value else None
        )
    key, _, value = declaration.type.partition(" : ")
    return [part.strip() for part in key.split(" . ")], (value.strip() or None)


def _expression_type(expression: str) -> str:
    expression = expression.strip()
    for spelt in SPELLINGS.values():
        if expression in (spelt.daddr, spelt.saddr):
            return spelt.addr_type
    if expression.endswith((" dport", " sport")):
        return "inet_service"
    if expression == "meta l4proto":
        return "inet_proto"
    if expression.startswith("numgen "):
        return "integer"
    return "any"


def _check_element(table: _Table, declaration: Set, element: Element, line: int) -> None:
    key, value, _ = element
    key_types, value_type = _types(declaration)
    interval = "interval" in declaration.flags
    _check_parts(key, key_types, interval, line)
    if value_type is None:
        if value is not None:
            raise Refused(line, f"set {declaration.name} takes no values")
        return
    if value is None:
        raise Refused(line, f"map {declaration.name} needs a value")
    if value_type == "verdict":
        word, _, chain = value.partition(" ")
        if word in ("jump", "goto"):
            if chain not in table.chains:
                raise Refused(line, ENOENT)
        elif value not in _VERDICTS:
            raise Refused(line, f"not a verdict: {value}")
        return
    _check_parts(value, [part.strip() for part in value_type.split(" . ")], False, line)


def _check_parts(text: str, types: list[str], interval: bool, line: int) -> None:
    parts = [part.strip() for part in text.split(" . ")]
    if len(parts) != len(types):
        raise Refused(line, f"{text} does not match the set's type ({' . '.join(types)})")
    addresses = address_types()
    for part, kind in zip(parts, types, strict=True):
        if kind in addresses:
            try:
                parsed = ipaddress.ip_network(part) if interval else ipaddress.ip_address(part)
            except ValueError:
                raise Refused(line, f"Could not resolve hostname: {part}") from None
            if parsed.version != addresses[kind].version:
                raise Refused(line, f"{part} is not an address of type {kind}")
        elif kind == "inet_service":
            if not part.isdigit() or int(part) > 65535:
                raise Refused(line, f"Value {part} exceeds valid range 0-65535")
        elif kind == "inet_proto":
            if part not in _PROTOCOLS and not (part.isdigit() and int(part) < 256):
                raise Refused(line, f"Could not resolve protocol name: {part}")
        elif kind == "integer" and not part.isdigit():
            raise Refused(line, f"not a number: {part}")
