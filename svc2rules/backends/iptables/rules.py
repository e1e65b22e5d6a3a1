"""A small model of an iptables-restore payload: tables, chains and rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COMMENT_MAX = 256
# Everything a validated Kubernetes name, an address or our own wording can contain.
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/\-\[\]>,;()'=]")


def comment(text: str) -> str:
    """`-m comment` arguments; anything outside a conservative alphabet is replaced, so a
    comment can never end its quotes or start a new rule."""
    safe = _COMMENT_UNSAFE.sub("?", text)[:COMMENT_MAX]
    return f'-m comment --comment "{safe}"'


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    spec: str  # match and target arguments, in iptables-restore syntax


@dataclass(frozen=True, slots=True)
class Jump:
    """A rule inserted at the top of a built-in chain, pointing into our chains."""

    chain: str
    spec: str


@dataclass
class Table:
    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    jumps: list[Jump] = field(default_factory=list)

    def chain(self, name: str) -> None:
        self.chains.append(name)

    def add(self, chain: str, *parts: str) -> None:
        spec = " ".join(p for p in parts if p)
        if spec:  # a rule made only of a comment disappears when comments are off
            self.rules.append(Rule(chain, spec))
