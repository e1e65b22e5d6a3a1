"""xtables objects: tables, chains and rules, and the commands of one iptables-restore
transaction. They know nothing of Services; the writer spells them, the reader builds them.

Rules and commands are values (compared by their fields) but not frozen dataclasses: a big
ruleset builds hundreds of thousands of them, and a frozen dataclass costs about two and a
half times as much to build. Nothing here changes one after it is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# The chains the kernel provides in each table (in the order iptables lists them).
BUILTIN_CHAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
        "raw": ("PREROUTING", "OUTPUT"),
    }
)
# `:CHAIN POLICY [packets:bytes]`: a user-defined chain has no policy.
NO_POLICY = "-"


def is_builtin(table: str, chain: str) -> bool:
    return chain in BUILTIN_CHAINS.get(table, ())


@dataclass(slots=True)
class Rule:
    """A rule of a chain: its match and target arguments (`spec`) as iptables-restore reads
    them, quoted where needed. In a transaction a rule is appended to its chain (`-A`)."""

    chain: str
    spec: str

    def line(self) -> str:
        return f"-A {self.chain} {self.spec}" if self.spec else f"-A {self.chain}"


@dataclass(slots=True)
class Jump:
    """A rule inserted at the top of a built-in chain (`-I CHAIN 1`), pointing into our chains.
    Inserted in order, the last one of a chain ends up first."""

    chain: str
    spec: str

    def insert(self) -> InsertRule:
        return InsertRule(self.chain, self.spec, 1)


@dataclass
class Table:
    """A table as a renderer builds it or a reader reads it: user-defined chains in declaration
    order, rules in order, jumps inserted into built-in chains, and the policies of the
    built-in chains that were declared (a save declares them; a renderer never does)."""

    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    jumps: list[Jump] = field(default_factory=list)
    policies: dict[str, str] = field(default_factory=dict)

    def chain(self, name: str) -> None:
        self.chains.append(name)

    def add(self, chain: str, *parts: str) -> None:
        """Append a rule made of `parts` (empty parts left out). A rule made only of empty
        parts (a comment, when comments are off) is not added at all."""
        spec = " ".join(p for p in parts if p)
        if spec:
            self.rules.append(Rule(chain, spec))

    def rules_by_chain(self) -> dict[str, list[str]]:
        """Every declared chain (user-defined ones, then built-in ones) -> its rules' specs."""
        out: dict[str, list[str]] = {chain: [] for chain in self.chains}
        for chain in self.policies:
            out.setdefault(chain, [])
        for rule in self.rules:
            out.setdefault(rule.chain, []).append(rule.spec)
        return out


# -- the commands of a transaction -------------------------------------------------------------


@dataclass(slots=True)
class DeclareChain:
    """`:CHAIN POLICY [0:0]`: creates the chain, or empties it if it exists (a built-in chain
    then takes the policy; a user-defined one has none)."""

    chain: str
    policy: str = NO_POLICY

    def line(self) -> str:
        return f":{self.chain} {self.policy} [0:0]"


@dataclass(slots=True)
class InsertRule:
    """`-I CHAIN N SPEC`: the rule becomes the N-th (1-based)."""

    chain: str
    spec: str
    position: int = 1

    def line(self) -> str:
        return f"-I {self.chain} {self.position} {self.spec}"


@dataclass(slots=True)
class ReplaceRule:
    """`-R CHAIN N SPEC`: the N-th rule (1-based) becomes SPEC."""

    chain: str
    position: int
    spec: str

    def line(self) -> str:
        return f"-R {self.chain} {self.position} {self.spec}"


@dataclass(slots=True)
class DeleteRule:
    """`-D CHAIN SPEC`: deletes the first rule equal to SPEC (the kernel refuses if none is)."""

    chain: str
    spec: str

    def line(self) -> str:
        return f"-D {self.chain} {self.spec}"


@dataclass(slots=True)
class DeleteRuleAt:
    """`-D CHAIN N`: deletes the N-th rule (1-based)."""

    chain: str
    position: int

    def line(self) -> str:
        return f"-D {self.chain} {self.position}"


@dataclass(slots=True)
class FlushChain:
    """`-F CHAIN`."""

    chain: str

    def line(self) -> str:
        return f"-F {self.chain}"


@dataclass(slots=True)
class DeleteChain:
    """`-X CHAIN`: the chain must be empty and no rule may jump to it, by the end of the
    transaction."""

    chain: str

    def line(self) -> str:
        return f"-X {self.chain}"


@dataclass(slots=True)
class ListRules:
    """`-S [CHAIN]`: prints the chain's rules (or the whole table's) to the loader's stdout,
    as `iptables -S` does, at that point of the transaction."""

    chain: str | None = None

    def line(self) -> str:
        return f"-S {self.chain}" if self.chain else "-S"


Command = (
    DeclareChain
    | Rule
    | InsertRule
    | ReplaceRule
    | DeleteRule
    | DeleteRuleAt
    | FlushChain
    | DeleteChain
    | ListRules
)
# Commands that put a rule into a chain (and so name a chain the rule may jump to).
RULE_COMMANDS = (Rule, InsertRule, ReplaceRule)


@dataclass
class Transaction:
    """One `*TABLE ... COMMIT` section. The kernel commits each section on its own: one
    iptables-restore run is atomic per section, not across sections (and a table may have
    several sections in one run, committed in order).

    `fetch_table`: the section begins with a chain-less `-S` (see the package doc: with
    `--noflush`, iptables-nft otherwise keeps a sorted list of every chain the commands name,
    which is quadratic in the chains of a big section; a listing makes it read the whole
    table once instead). Its output goes to the loader's stdout."""

    table: str
    commands: list[Command] = field(default_factory=list)
    fetch_table: bool = False
    # Set by the reader: the 1-based line of each command, and of the COMMIT.
    lines: list[int] | None = field(default=None, compare=False, repr=False)
    commit_line: int = field(default=0, compare=False, repr=False)

    def declared(self) -> set[str]:
        """The chains this transaction declares (they exist for all of it)."""
        return {c.chain for c in self.commands if isinstance(c, DeclareChain)}

    def deleted(self) -> set[str]:
        return {c.chain for c in self.commands if isinstance(c, DeleteChain)}


def chains_of(rules: Iterable[Rule]) -> dict[str, list[str]]:
    """chain -> its rules' specs, in order."""
    out: dict[str, list[str]] = {}
    for rule in rules:
        out.setdefault(rule.chain, []).append(rule.spec)
    return out
