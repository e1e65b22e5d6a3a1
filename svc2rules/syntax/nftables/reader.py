"""The one reader of nft text: `nft list table|set|tables` output, and the writer's scripts.

Both have the same block structure (`table ip NAME { map NAME { ... } chain NAME { ... } }`);
they differ in how element lists are laid out (the kernel wraps `elements = { a, b }` over
lines, the writer puts one element per line) and in spelling (the kernel says `priority
dstnat` and `timeout 3h` where the writer said `-100` and `10800s`). The reader scans the
structure once (`scan`) and offers two views of it:

* `read_tables`: the objects of `objects.py`, for a program to look at;
* `normalised`: the listing in the kernel's own words, made comparable: elements one per
  line and sorted (a set lists in hash order, which depends on its history), elements the
  kernel learnt at run time (`expires`) left out, sets, maps and chains in name order (the
  kernel lists them in creation order, which an incremental update changes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from svc2rules.syntax.nftables.objects import Chain, Element, Hook, Kind, Map, Rule, Set, Table
from svc2rules.syntax.nftables.spelling import family_of_table

Line = tuple[int, str]  # (1-based line number, text without its indentation)

_TABLE = re.compile(r"(?:add )?table (\S+) (\S+)( \{)?$")
_BLOCK = re.compile(r"(set|map|chain) (\S+) \{$")
_HOOK = re.compile(r"type (\S+) hook (\S+)(?: device \S+)? priority ([^;]+);(?: policy (\S+);)?$")
_RULE_COMMENT = re.compile(r'(.*) comment "([^"]*)"$')
_QUOTED = re.compile(r'"([^"]*)"$')
# An element list's tokens: a quoted string, a brace, a comma, or a run of anything else.
_TOKEN = re.compile(r'"[^"]*"?|[{},]|[^"{},]+')
_QUOTED_ANYWHERE = re.compile(r'"[^"]*"?')
# A quoted string holding what splits an element list (then the line is read token by token).
_QUOTED_PUNCTUATION = re.compile(r'"[^"]*[,{}][^"]*"')
_DURATION = re.compile(r"(\d+)(d|h|ms|m|s)")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Element options the kernel lists between the key and the comment.
_ELEMENT_OPTIONS = ("timeout", "expires", "counter", "packets", "bytes")


@dataclass
class Block:
    """A set, map or chain as written or listed: its lines but elements, and its elements
    (each with the line it starts on), or None when it has no element list."""

    kind: Kind
    name: str
    line: int
    lines: list[Line] = field(default_factory=list)
    elements: list[Line] | None = None


@dataclass
class TableText:
    """One `table FAMILY NAME [{ ... }]` statement: its own lines and its blocks."""

    family: str
    name: str
    line: int
    body: bool  # whether it had a `{ }` block
    lines: list[Line] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


class ReadError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def _depth(text: str) -> int:
    """Braces opened minus braces closed, outside quoted strings."""
    if '"' in text:
        text = _QUOTED_ANYWHERE.sub("", text)
    return text.count("{") - text.count("}")


def scan_block(lines: list[Line], start: int, header: Line) -> tuple[TableText, int]:
    """The table whose `{` ends `header`: its content up to the matching `}` (from
    lines[start]); returns it and the index of the line after it."""
    number, text = header
    match = _TABLE.match(text)
    if match is None:
        raise ReadError(number, f"not a table: {text}")
    table = TableText(match.group(1), match.group(2), number, body=bool(match.group(3)))
    if not table.body:
        return table, start
    index = start
    block: Block | None = None
    while index < len(lines):
        number, text = lines[index]
        index += 1
        if block is None:
            if text == "}":
                return table, index
            opened = _BLOCK.match(text)
            if opened is not None:
                kind: Kind = opened.group(1)  # type: ignore[assignment]
                block = Block(kind, opened.group(2), number)
            else:
                table.lines.append((number, text))
            continue
        if text == "}":
            table.blocks.append(block)
            block = None
        elif text.startswith("elements = {"):
            pieces = [(number, text[len("elements = {") :])]
            depth = 1 + _depth(pieces[0][1])
            while depth > 0:
                if index >= len(lines):
                    raise ReadError(number, f"unclosed element list in {block.name}")
                pieces.append(lines[index])
                depth += _depth(lines[index][1])
                index += 1
            block.elements = split_elements(pieces)
        else:
            block.lines.append((number, text))
    raise ReadError(table.line, f"unclosed table {table.name}")


def script_lines(text: str) -> list[Line]:
    """Non-blank lines without indentation or `#` comment lines."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            out.append((number, stripped))
    return out


def scan(text: str) -> list[TableText]:
    """Every table statement of a listing, in order."""
    lines = script_lines(text)
    tables: list[TableText] = []
    index = 0
    while index < len(lines):
        header = lines[index]
        table, index = scan_block(lines, index + 1, header)
        tables.append(table)
    return tables


def split_elements(pieces: Iterable[Line]) -> list[Line]:
    """The elements of an element list (`a, b }` spread over lines), each with the line it
    starts on: split at commas outside quotes and braces, up to the list's closing brace."""
    out: list[Line] = []
    current: list[str] = []
    start = depth = 0
    for number, text in pieces:
        if depth == 0 and "{" not in text and not _QUOTED_PUNCTUATION.search(text):
            # The common line (a listing of 100k elements has 100k of them): split in C.
            segment, closing, _ = text.partition("}")
            *complete, rest = segment.split(",")
            for part in complete:
                if current:
                    current.append(part)
                    element = "".join(current).strip()
                    current = []
                else:
                    start, element = number, part.strip()
                if element:
                    out.append((start, element))
            if rest and (current or not rest.isspace()):
                if not current:
                    start = number
                current.append(rest)
            if closing:
                return _closed(out, current, start)
        else:
            for token in _TOKEN.findall(text):
                if token == "{":
                    depth += 1
                elif token == "}":
                    if depth == 0:
                        return _closed(out, current, start)
                    depth -= 1
                elif token == "," and depth == 0:
                    _closed(out, current, start)
                    current = []
                    continue
                if not current:
                    if token.isspace():
                        continue
                    start = number
                current.append(token)
        if current:
            current.append(" ")
    return _closed(out, current, start)


def _closed(out: list[Line], current: list[str], start: int) -> list[Line]:
    element = "".join(current).strip()
    if element:
        out.append((start, element))
    return out


def parse_element(text: str) -> Element | None:
    """`KEY [timeout T] [expires E] [comment "C"] [: VALUE]` -> (key, value, comment); None for
    an element the kernel learnt at run time (it expires)."""
    value: str | None = None
    quote = text.find('"')
    colon = text.find(" : ", text.rfind('"') + 1 if quote >= 0 else 0)
    if colon >= 0:
        text, value = text[:colon], text[colon + 3 :].strip()
    comment = ""
    cut = text.find(' comment "')
    if cut >= 0:
        comment = text[cut + len(' comment "') :].rstrip().removesuffix('"')
        text = text[:cut]
    words = text.split()
    for index, word in enumerate(words):
        if word in _ELEMENT_OPTIONS:
            if "expires" in words[index:]:
                return None
            words = words[:index]
            break
    return (" ".join(words), value, comment)


def _learnt(element: str) -> bool:
    """Whether the kernel learnt the element at run time (it expires): parse_element's None."""
    return " expires " in element.split('"', 1)[0]


def seconds(text: str) -> int:
    """`10800s`, `3h`, `1d2h3m4s` -> seconds."""
    total = 0
    for number, unit in _DURATION.findall(text):
        total += int(number) * _SECONDS.get(unit, 0)
    return total


def _priority(text: str) -> int | str:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def _comment(text: str) -> str:
    match = _QUOTED.search(text)
    return match.group(1) if match else ""


def build_collection(block: Block) -> Set:
    """A set or map from its block (elements the kernel learnt left out)."""
    collection = Map(block.name) if block.kind == "map" else Set(block.name)
    extra = []
    for _, text in block.lines:
        word, _, rest = text.partition(" ")
        if word == "type":
            collection.type = rest
        elif word == "typeof":
            collection.typeof = rest
        elif word == "flags":
            collection.flags = tuple(flag.strip() for flag in rest.split(","))
        elif word == "timeout":
            collection.timeout = seconds(rest)
        elif word == "size" and rest.isdigit():
            collection.size = int(rest)
        elif word == "comment":
            collection.comment = _comment(rest)
        else:
            extra.append(text)
    collection.extra = tuple(extra)
    for _, text in block.elements or ():
        element = parse_element(text)
        if element is not None:
            collection.elements.append(element)
    return collection


def build_chain(block: Block) -> Chain:
    chain = Chain(block.name)
    for _, text in block.lines:
        hook = _HOOK.match(text)
        if hook is not None and chain.hook is None and not chain.rules:
            chain.hook = Hook(hook.group(1), hook.group(2), _priority(hook.group(3)), hook.group(4) or "")
        elif text.startswith('comment "') and chain.hook is None and not chain.rules:
            chain.comment = _comment(text)
        else:
            commented = _RULE_COMMENT.match(text)
            chain.rules.append(Rule(commented.group(1), commented.group(2)) if commented else Rule(text))
    return chain


def build_table(text: TableText) -> Table | None:
    """The objects of one scanned table (None for a family other than ip/ip6)."""
    family = family_of_table(text.family)
    if family is None:
        return None
    table = Table(family, text.name)
    extra = []
    for _, line in text.lines:
        if line.startswith('comment "'):
            table.comment = _comment(line)
        else:
            extra.append(line)
    table.extra = tuple(extra)
    for block in text.blocks:
        if block.kind == "chain":
            table.chain(build_chain(block))
        else:
            table.collection(build_collection(block))
    return table


def read_tables(text: str) -> list[Table]:
    """The ip and ip6 tables of `nft list table|set|tables|ruleset` output, as objects."""
    return [table for scanned in scan(text) if (table := build_table(scanned)) is not None]


def normalised(text: str, *, skip: Iterable[str] = ()) -> str:
    """A listing made comparable (see the module docstring), without the sets and maps named
    in `skip`: the kernel's own lines, re-indented."""
    left_out = set(skip)
    out: list[str] = []
    for table in scan(text):
        head = f"table {table.family} {table.name}"
        if not table.body:
            out.append(head)
            continue
        out.append(head + " {")
        out.extend(f"\t{line}" for _, line in table.lines)
        blocks = []
        for block in table.blocks:
            if block.kind != "chain" and block.name in left_out:
                continue
            lines = [f"\t{block.kind} {block.name} {{"]
            lines.extend(f"\t\t{line}" for _, line in block.lines)
            if block.elements is not None:
                elements = [element for _, element in block.elements if not _learnt(element)]
                lines.append("\t\telements = {")
                lines.extend(f"\t\t\t{element}" for element in sorted(elements))
                lines.append("\t\t}")
            lines.append("\t}")
            blocks.append(lines)
        for lines in sorted(blocks):
            out.extend(lines)
        out.append("}")
    return "".join(f"{line}\n" for line in out)


def verdict_chain(value: str | None) -> str | None:
    """The chain a verdict (`jump CHAIN`, `goto CHAIN`) leads to; None for other values."""
    if value is not None and value.startswith(("jump ", "goto ")):
        return value.split(" ", 1)[1]
    return None
