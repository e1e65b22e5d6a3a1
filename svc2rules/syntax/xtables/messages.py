"""What the xtables tools say when they refuse something, read back: where, and about what.

iptables-restore names the line it refused (`line 12 failed`, `Error occurred at line: 12`).
A refusal found when the kernel commits a section is reported on its COMMIT line; the
message then usually names the chain at fault, and the line that uses it is the culprit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LINE = re.compile(r"(?:line:? |line )(\d+)")
_NAMED_CHAIN = re.compile(r"[Cc]hain [`'\"]?([A-Za-z0-9_.-]+)")
# What iptables prints when another process holds the xtables lock for longer than `-w`.
_LOCK_BUSY = ("xtables lock", "holding the xtables lock")


def error_line(message: str) -> int | None:
    """The 1-based input line a restore's error names, if any."""
    match = _LINE.search(message)
    return int(match.group(1)) if match else None


def lock_busy(message: str) -> bool:
    """Whether a tool's error says the xtables lock was busy (a retryable failure)."""
    return any(text in message for text in _LOCK_BUSY)


def culprit(lines: Sequence[str], number: int, message: str) -> int:
    """The line to blame for a refusal reported at `number` (1-based) of `lines`: the line
    itself, or for a COMMIT whose message names a chain, the first line of that section
    using the chain."""
    if lines[number - 1] != "COMMIT":
        return number
    named = _NAMED_CHAIN.search(message)
    if not named:
        return number
    chain = named.group(1)
    start = number - 1
    while start > 0 and not lines[start - 1].startswith("*"):
        start -= 1
    for i in range(start, number - 1):
        if chain in lines[i].split()[1:]:
            return i + 1
    return number
