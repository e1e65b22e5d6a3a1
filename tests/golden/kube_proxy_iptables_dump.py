"""kube-proxy's iptables expectations, made comparable with what svc2rules compiles.

kube-proxy's unit tests (pkg/proxy/iptables/proxier_test.go) assert the iptables-restore input
of one sync (`fp.iptablesData`) with `assertIPTablesRulesEqual`: it parses the result with
`iptablestest.ParseIPTablesDump` (pkg/util/iptables/testing/parse.go: blank and `#` lines
skipped, each line trimmed), sorts it with `sortIPTablesRules` and compares the text with the
expectation, which the tests write already sorted. `sortIPTablesRules` orders the tables by
name; the chains of a table KUBE-NODEPORTS first, KUBE-SERVICES second, then KUBE-* by name,
then the others by name; the rules of KUBE-NODEPORTS and KUBE-SERVICES (both tables) stably by
the service name of their comment (the comment up to the first blank or colon), the nat
KUBE-SERVICES "must be the last rule" rule last; every other chain keeps its rules in order.
`IPTablesDump.String` writes the tables back, chain declarations first, then the rules chain by
chain, then the `-X` lines of deleted chains. `sort_like_kube_proxy` and `dump_text` are those
two functions. After its first (full) sync kube-proxy writes partial restore inputs (only the
chains of the Services that changed); `state_after` folds such a sequence into the tables the
host then has, which is what one compile of the same objects must equal.

Two things of svc2rules' output are not part of kube-proxy's restore input and are taken out
before the comparison (`restore_input`): the jumps from the built-in chains (svc2rules writes
them as `-I CHAIN 1 ...` lines of its payload; kube-proxy installs the same jumps with
`EnsureRule` before it writes the payload, proxier.go syncProxyRules, so they are not in
`iptablesData`), and the quoting of a comment without blanks (kube-proxy writes
`--comment ns/svc:port`, svc2rules `--comment "ns/svc:port"`; iptables-restore reads both as the
same word, and kube-proxy's own rule parser, parse.go ParseRule, strips the quotes too). Nothing
else is normalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TABLE = re.compile(r"^\*(.*)$")
_CHAIN = re.compile(r"^:([^ ]*) - \[([0-9]*):([0-9]*)\]$")
_RULE = re.compile(r"^-A ([^ ]*) (.*)$")
_DELETE = re.compile(r"^-X ([^ ]*)$")
# parse.go wordRegex: a word, or a quoted string, at the start or after a blank.
_WORD = re.compile(r'(?:^|\s)("[^"]*"|[^"]\S*)')
_LAST_RULE = "must be the last rule"
NODE_PORTS = "KUBE-NODEPORTS"
SERVICES = "KUBE-SERVICES"


@dataclass
class Chain:
    name: str
    counters: str = "[0:0]"
    rules: list[str] = field(default_factory=list)
    # `-X CHAIN` in a restore input (parse.go Chain.Deleted): kube-proxy declares a stale
    # chain, which flushes it, then deletes it.
    deleted: bool = False


@dataclass
class Table:
    name: str
    chains: list[Chain] = field(default_factory=list)

    def chain(self, name: str) -> Chain:
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise ValueError(f"rule for undeclared chain {name} in table {self.name}")


def parse_dump(text: str) -> list[Table]:
    """iptablestest.ParseIPTablesDump, for the lines kube-proxy's expectations use."""
    tables: list[Table] = []
    table: Table | None = None
    declaring = False
    for raw in text.strip("\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if table is None:
            match = _TABLE.match(line)
            if match is None:
                raise ValueError(f"table {len(tables) + 1} starts with {line!r}, not a table name")
            table = Table(match.group(1))
            tables.append(table)
            declaring = True
            continue
        declared = _CHAIN.match(line) if declaring else None
        if declared is not None:
            table.chains.append(Chain(declared.group(1), f"[{declared.group(2)}:{declared.group(3)}]"))
            continue
        declaring = False
        rule = _RULE.match(line)
        delete = _DELETE.match(line)
        if rule is not None:
            table.chain(rule.group(1)).rules.append(line)
        elif delete is not None:
            table.chain(delete.group(1)).deleted = True
        elif line == "COMMIT":
            table = None
        else:
            raise ValueError(f"error parsing rule {line!r}")
    if table is not None:
        raise ValueError("could not parse iptables data (no COMMIT line?)")
    return tables


def words(rule: str) -> list[str]:
    """parse.go ParseRule's words: a quoted string is one word, its quotes stripped."""
    return [match.strip('"') for match in _WORD.findall(rule)]


def _comment(rule: str) -> str | None:
    split = words(rule)
    for i, word in enumerate(split[:-1]):
        if word == "--comment":
            return split[i + 1]
    return None


def _service_name(rule: str) -> str | None:
    text = _comment(rule)
    return None if text is None else re.split(r"[ :]", text, maxsplit=1)[0]


def _stable_by_service_name(rules: list[str], last_rule_last: bool) -> list[str]:
    """Go's sort.SliceStable with orderByCommentServiceName (a rule without a comment is
    "not less" than any other), as an insertion sort so the same pairwise less is used."""

    def less(a: str, b: str) -> bool:
        if last_rule_last:
            comment_a, comment_b = _comment(a), _comment(b)
            if comment_a is not None and _LAST_RULE in comment_a:
                return False
            if comment_b is not None and _LAST_RULE in comment_b:
                return True
        name_a, name_b = _service_name(a), _service_name(b)
        return name_a is not None and name_b is not None and name_a < name_b

    out: list[str] = []
    for rule in rules:
        i = len(out)
        while i > 0 and less(rule, out[i - 1]):
            i -= 1
        out.insert(i, rule)
    return out


def _chain_order(name: str) -> tuple[int, str]:
    if name == NODE_PORTS:
        return (0, "")
    if name == SERVICES:
        return (1, "")
    return (2, name) if name.startswith("KUBE-") else (3, name)


def sort_like_kube_proxy(tables: list[Table]) -> list[Table]:
    """proxier_test.go sortIPTablesRules."""
    out = []
    for table in sorted(tables, key=lambda t: t.name):
        chains = []
        for chain in sorted(table.chains, key=lambda c: _chain_order(c.name)):
            rules = chain.rules
            if chain.name in (NODE_PORTS, SERVICES):
                rules = _stable_by_service_name(rules, table.name == "nat" and chain.name == SERVICES)
            chains.append(Chain(chain.name, chain.counters, list(rules), chain.deleted))
        out.append(Table(table.name, chains))
    return out


def dump_text(tables: list[Table]) -> str:
    """parse.go IPTablesDump.String."""
    lines = []
    for table in tables:
        lines.append(f"*{table.name}")
        lines += [f":{chain.name} - {chain.counters}" for chain in table.chains]
        lines += [rule for chain in table.chains for rule in chain.rules]
        lines += [f"-X {chain.name}" for chain in table.chains if chain.deleted]
        lines.append("COMMIT")
    return "".join(f"{line}\n" for line in lines)


def restored(state: list[Table], restore: list[Table]) -> list[Table]:
    """The tables after `iptables-restore --noflush` of `restore` onto `state`, as kube-proxy
    loads every sync (proxier.go syncProxyRules, `RestoreAll(..., NoFlushTables, ...)`): a
    declared chain is created or flushed and gets the restore's rules, `-X` deletes it, and a
    chain the restore does not declare keeps its rules. This is how the state after a partial
    sync (only the changed Services' chains written) follows from the state before it."""
    out = {
        table.name: {c.name: Chain(c.name, c.counters, list(c.rules)) for c in table.chains}
        for table in state
    }
    for table in restore:
        chains = out.setdefault(table.name, {})
        for chain in table.chains:
            if chain.deleted:
                chains.pop(chain.name, None)
            else:
                chains[chain.name] = Chain(chain.name, chain.counters, list(chain.rules))
    return [Table(name, list(chains.values())) for name, chains in out.items()]


def state_after(restores: list[str]) -> str:
    """The sorted text of the tables after loading each restore input in turn, from nothing."""
    state: list[Table] = []
    for text in restores:
        state = restored(state, parse_dump(text))
    return dump_text(sort_like_kube_proxy(state))


_QUOTED_WORD = re.compile(r'--comment "([^"\s]+)"')


def restore_input(payload: str) -> str:
    """svc2rules' iptables payload as kube-proxy's `iptablesData` would spell it: without the
    jumps from the built-in chains and with a blank-free comment unquoted (module docstring)."""
    kept = [line for line in payload.splitlines() if not line.startswith("-I ")]
    return "\n".join(_QUOTED_WORD.sub(r"--comment \1", line) for line in kept) + "\n"


def differences(expected: str, actual_payload: str) -> list[str]:
    """assertIPTablesRulesEqual: the sorted restore input against the expectation, line by line
    (a unified diff of the two texts, empty when they are equal)."""
    import difflib

    want = expected.lstrip(" \t\n")
    got = dump_text(sort_like_kube_proxy(parse_dump(restore_input(actual_payload).lstrip(" \t\n"))))
    if want == got:
        return []
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            want.splitlines(True), got.splitlines(True), "kube-proxy", "svc2rules", n=0
        )
    ]


def chain_differences(expected: str, actual_payload: str, table: str, chain: str) -> list[str]:
    """assertIPTablesChainEqual: the rules of one chain of the restore input, in order, against
    the expectation (the chain's `-A` lines)."""
    import difflib

    want = expected.lstrip(" \t\n")
    got = ""
    for parsed in parse_dump(restore_input(actual_payload)):
        if parsed.name == table:
            got = "".join(f"{rule}\n" for c in parsed.chains if c.name == chain for rule in c.rules)
    if want == got:
        return []
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            want.splitlines(True), got.splitlines(True), "kube-proxy", "svc2rules", n=0
        )
    ]
