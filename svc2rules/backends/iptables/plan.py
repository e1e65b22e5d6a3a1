"""What we own + what we want -> the steps of one write (pure: no kernel here).

Planning is done in two passes so that everything the kernel must be asked is asked at once:
`diff_table` proposes positional edits for long chains whose rules barely changed, the
applier lists those chains (with the built-in chains' jumps) side by side, and `confirm`
keeps an edit only where the kernel's chain still has the length the state says.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from svc2rules.backends.iptables.ops import ChainOp, EditChain, FixJumps, RemoveChain, WriteChain
from svc2rules.syntax.xtables import Command, DeleteRuleAt, InsertRule, ReplaceRule, normalize

# Chains with more rules than this are edited in place (positional) instead of rewritten.
POSITIONAL_MIN_RULES = 32


def diff_table(
    old: Mapping[str, str],
    new: Mapping[str, Sequence[str]],
    *,
    full: bool,
    removable: Sequence[str] | None = None,
    keep: frozenset[str] = frozenset(),
) -> list[ChainOp]:
    """Steps turning `old` (chain -> rules joined by newlines, as the state keeps them) into
    `new` (the chains to write or compare). A full load writes every chain of `new`.

    `removable`: the old chains that may have gone (None: every old chain not in `new`);
    `keep`: chains never removed here (the marker, written on its own)."""
    ops: list[ChainOp] = []
    for chain, rules in new.items():
        before = old.get(chain)
        if before is not None and not full and before == "\n".join(rules):
            continue
        old_rules = before.split("\n") if before else []
        if before is not None and not full and len(old_rules) > POSITIONAL_MIN_RULES:
            edits = positional(chain, old_rules, rules)
            if len(edits) < len(rules) // 2:
                ops.append(EditChain(chain, tuple(edits), len(old_rules), tuple(rules)))
                continue
        ops.append(WriteChain(chain, tuple(rules)))
    candidates = old if removable is None else dict.fromkeys(removable)
    ops.extend(RemoveChain(c) for c in candidates if c in old and c not in new and c not in keep)
    return ops


def edits_to_confirm(ops: Sequence[ChainOp]) -> list[str]:
    """The chains whose live length decides between editing and rewriting them."""
    return [op.chain for op in ops if isinstance(op, EditChain)]


def confirm(ops: Sequence[ChainOp], live_lengths: Mapping[str, int | None]) -> list[ChainOp]:
    """Positional edits where the kernel's chain has the rules the state says, rewrites elsewhere
    (a chain someone inserted into, or that could not be listed)."""
    return [
        op.rewrite() if isinstance(op, EditChain) and live_lengths.get(op.chain) != op.before else op
        for op in ops
    ]


def fix_jumps(live: Mapping[str, Sequence[str]], wanted: Sequence[tuple[str, str]]) -> list[FixJumps]:
    """Built-in chains whose jumps to us (`live`, as the kernel spells them) are not the wanted
    ones (compared as arguments, in any order): all of ours go, the wanted ones come in."""
    by_chain: dict[str, list[str]] = {}
    for chain, spec in wanted:
        by_chain.setdefault(chain, []).append(spec)
    fixes = []
    for chain in sorted(set(by_chain) | set(live)):
        have = sorted(normalize(s) for s in live.get(chain, ()))
        want = sorted(normalize(s) for s in by_chain.get(chain, ()))
        if have != want:
            fixes.append(FixJumps(chain, tuple(live.get(chain, ())), tuple(by_chain.get(chain, ()))))
    return fixes


def positional(chain: str, old: Sequence[str], new: Sequence[str]) -> list[Command]:
    """`-R`/`-D`/`-I` edits turning `old` into `new`, last position first so that earlier
    positions stay valid while the edits run."""
    start = 0
    while start < len(old) and start < len(new) and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    matcher = difflib.SequenceMatcher(None, old[start:end_old], new[start:end_new], autojunk=False)
    ops: list[Command] = []
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        i1, i2, j1, j2 = i1 + start, i2 + start, j1 + start, j2 + start
        common = min(i2 - i1, j2 - j1)
        ops.extend(ReplaceRule(chain, i1 + k + 1, new[j1 + k]) for k in range(common))
        if i2 - i1 > common:
            ops.extend(DeleteRuleAt(chain, k + 1) for k in reversed(range(i1 + common, i2)))
        else:
            ops.extend(InsertRule(chain, new[k], i1 + (k - j1) + 1) for k in range(j1 + common, j2))
    return ops
