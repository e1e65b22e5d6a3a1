"""kube-proxy's nftables expectations, made comparable with what svc2rules compiles.

kube-proxy's unit tests (pkg/proxy/nftables/proxier_test.go) assert rulesets in knftables'
`nft.Dump()` form, one `add table|set|map|chain|rule|element ip kube-proxy ...` command a line,
and compare them with `assertNFTablesTransactionEqual` (helpers_test.go), which sorts the lines
by object kind and name, keeps the rules of a chain in order and sorts element lines. `Normal`
is that comparison as objects: the table's comment; every set and map with its declaration and
its elements as a set (nft keeps no element order); every chain with its hook, comment and rules
in order. Rule texts are compared with runs of blanks made one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from svc2rules.syntax.nftables import Table, parse_element, read_tables

Element = tuple[str, str | None, str]
Declaration = tuple[str, tuple[str, ...], int | None, str]
HookKey = tuple[str, str, str] | None
RuleKey = tuple[str, str]

_ADD = re.compile(r"add (table|set|map|chain|rule|element) (\S+) (\S+)(?: (\S+))?(?: (.*))?$")
_RULE_COMMENT = re.compile(r'(.*?) comment "([^"]*)"$')
_QUOTED = re.compile(r'"([^"]*)"')
_DURATION = re.compile(r"(\d+)([dhms])")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _blanks(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Normal:
    """One table, object for object, in the terms kube-proxy's comparison cares about."""

    name: str = ""
    comment: str = ""
    collections: dict[tuple[str, str], Declaration] = field(default_factory=dict)
    elements: dict[str, set[Element]] = field(default_factory=dict)
    chains: dict[str, tuple[HookKey, str]] = field(default_factory=dict)
    rules: dict[str, list[RuleKey]] = field(default_factory=dict)

    def differences(self, other: Normal) -> list[str]:
        """What `other` has or lacks compared with this one, one line per object."""
        out = []
        if (self.name, self.comment) != (other.name, other.comment):
            out.append(f"table: {self.name} {self.comment!r} != {other.name} {other.comment!r}")
        for kind, mine, theirs in (
            ("set/map", self.collections, other.collections),
            ("chain", self.chains, other.chains),
            ("rules of chain", self.rules, other.rules),
        ):
            for key in sorted(set(mine) | set(theirs), key=str):
                if mine.get(key) != theirs.get(key):  # type: ignore[call-overload]
                    out.append(f"{kind} {key}: expected {mine.get(key)!r}, got {theirs.get(key)!r}")  # type: ignore[call-overload]
        for name in sorted(set(self.elements) | set(other.elements)):
            mine_e, theirs_e = self.elements.get(name, set()), other.elements.get(name, set())
            for element in sorted(mine_e - theirs_e, key=str):
                out.append(f"elements of {name}: missing {element!r}")
            for element in sorted(theirs_e - mine_e, key=str):
                out.append(f"elements of {name}: unexpected {element!r}")
        return out

    def without_stale_chains(self) -> Normal:
        """Without the empty service-port chains nothing refers to: kube-proxy flushes the chains
        of a deleted service port or endpoint and deletes them a second later (proxier.go,
        staleChains), so a transient kube-proxy state lists them; they match no packet."""
        referenced = " ".join(
            [text for rules in self.rules.values() for text, _ in rules]
            + [value or "" for elements in self.elements.values() for _, value, _ in elements]
        )
        words = set(referenced.split())
        stale = {
            name
            for name in self.chains
            if "/" in name and not self.rules.get(name) and name not in words and f"@{name}" not in words
        }
        return Normal(
            self.name,
            self.comment,
            dict(self.collections),
            {k: set(v) for k, v in self.elements.items()},
            {k: v for k, v in self.chains.items() if k not in stale},
            {k: list(v) for k, v in self.rules.items() if k not in stale},
        )


def _hook(policy_free: tuple[str, str, int | str] | None) -> HookKey:
    if policy_free is None:
        return None
    kind, hook, priority = policy_free
    return (kind, hook, str(priority))


def _seconds(text: str) -> int:
    return sum(int(n) * _SECONDS[u] for n, u in _DURATION.findall(text))


def _body(text: str) -> list[str]:
    """`{ a ; b ; }` -> ["a", "b"]."""
    inner = text.strip()
    if not inner:
        return []
    inner = inner.removeprefix("{").removesuffix("}")
    return [part.strip() for part in inner.split(" ; ") if part.strip() and part.strip() != ";"]


def parse_dump(text: str) -> Normal:
    """knftables' dump form (`add ... ip kube-proxy ...` lines; `#` lines and blank lines
    ignored, as kube-proxy's comparison ignores them)."""
    normal = Normal()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ADD.match(line)
        if match is None:
            raise ValueError(f"not a knftables dump line: {line}")
        kind, _family, table, name, rest = match.groups()
        rest = rest or ""
        if kind == "table":
            normal.name = table
            for part in _body(f"{name or ''} {rest}"):
                if part.startswith("comment "):
                    normal.comment = _QUOTED.search(part).group(1)  # type: ignore[union-attr]
        elif kind in ("set", "map"):
            type_, comment = "", ""
            flags: tuple[str, ...] = ()
            timeout: int | None = None
            for part in _body(rest):
                word, _, value = part.partition(" ")
                if word == "type":
                    type_ = value
                elif word == "flags":
                    flags = tuple(f.strip() for f in value.split(","))
                elif word == "timeout":
                    timeout = _seconds(value)
                elif word == "comment":
                    comment = _QUOTED.search(value).group(1)  # type: ignore[union-attr]
            normal.collections[kind, name] = (_blanks(type_), flags, timeout, comment)
            normal.elements.setdefault(name, set())
        elif kind == "chain":
            hook: tuple[str, str, int | str] | None = None
            comment = ""
            for part in _body(rest):
                hooked = re.match(r"type (\S+) hook (\S+) priority (\S+)", part)
                if hooked:
                    hook = (hooked.group(1), hooked.group(2), hooked.group(3))
                elif part.startswith("comment "):
                    comment = _QUOTED.search(part).group(1)  # type: ignore[union-attr]
            normal.chains[name] = (_hook(hook), comment)
            normal.rules.setdefault(name, [])
        elif kind == "rule":
            commented = _RULE_COMMENT.match(rest)
            rule = (commented.group(1), commented.group(2)) if commented else (rest, "")
            normal.rules.setdefault(name, []).append((_blanks(rule[0]), rule[1]))
        else:
            element = parse_element(rest.strip().removeprefix("{").removesuffix("}").strip())
            assert element is not None, line
            key, element_value, element_comment = element
            normal.elements.setdefault(name, set()).add(
                (_blanks(key), element_value and _blanks(element_value), element_comment)
            )
    return normal


def of_table(table: Table) -> Normal:
    """The objects the nftables reader read (a hook's default policy, accept, is no difference)."""
    normal = Normal(table.name, table.comment)
    for collection in table.collections:
        normal.collections[collection.kind, collection.name] = (
            _blanks(collection.type),
            collection.flags,
            collection.timeout,
            collection.comment,
        )
        normal.elements[collection.name] = {
            (_blanks(key), value and _blanks(value), comment) for key, value, comment in collection.elements
        }
    for chain in table.chains:
        hook = chain.hook
        assert hook is None or hook.policy in ("", "accept"), f"{chain.name}: policy {hook.policy}"
        normal.chains[chain.name] = (
            _hook((hook.type, hook.hook, hook.priority) if hook else None),
            chain.comment,
        )
        normal.rules[chain.name] = [(_blanks(rule.text), rule.comment) for rule in chain.rules]
    return normal


def of_script(text: str, table: str) -> Normal:
    """The table a compile's whole-table script creates (its `table ... {` block), read back."""
    start = text.index(f" {table} {{\n")
    block = text[text.rindex("\n", 0, start) + 1 :]
    (read,) = read_tables(block)
    return of_table(read)
