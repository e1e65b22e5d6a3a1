"""Typed errors. The CLI is the only place that turns them into exit codes."""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass

# How much of each part of a diagnostic (file, object, field, message) is printed: a valid
# name or path is far shorter; a hostile one (a 200 MB name) must not become a 200 MB line.
PART_LIMIT = 1024
# How long one line on stderr may be (a diagnostic has at most five parts).
LINE_LIMIT = 16 * 1024

# What a terminal would act on rather than print: C0 and C1 controls and DEL (BEL, ESC, CSI...),
# line and paragraph separators (a reader splitting lines sees two), and the bidirectional
# overrides that make text read differently from what it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in the input, pointing at a file, an object and a field."""

    source: str
    message: str
    kind: str | None = None
    obj: str | None = None  # "namespace/name"
    field: str | None = None

    def __str__(self) -> str:
        parts = [printable(self.source, PART_LIMIT)]
        if self.kind is not None:
            parts.append(
                f"{printable(self.kind, PART_LIMIT)} {printable(self.obj or '<unnamed>', PART_LIMIT)}"
            )
        if self.field:
            parts.append(printable(self.field, PART_LIMIT))
        parts.append(printable(self.message, PART_LIMIT))
        return ": ".join(parts)


def printable(text: str, limit: int = LINE_LIMIT) -> str:
    """`text` as one line a terminal prints as it is: control characters escaped (`\\n`, `\\x1b`,
    `\\u202e`), and at most about `limit` characters, saying how long it was when shortened."""
    if len(text) <= limit:
        return _UNPRINTABLE.sub(_escape, text)
    marker = f"... ({len(text)} characters)"
    keep = max(limit - len(marker), 0)
    head = _UNPRINTABLE.sub(_escape, text[:keep])
    if len(head) > keep:
        # Escapes made it longer: cut again, never inside an escape.
        cut = head[:keep]
        backslash = cut.rfind("\\", max(keep - 5, 0))
        if backslash >= 0 and backslash + _escape_length(head, backslash) > keep:
            cut = cut[:backslash]
        head = cut
    return head + marker


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape_length(text: str, at: int) -> int:
    """Length of the escape starting at text[at] (a backslash), as _escape writes them."""
    return {"x": 4, "u": 6}.get(text[at + 1 : at + 2], 2)


class Svc2RulesError(Exception):
    """Base class of every error svc2rules reports to a user."""


class InputError(Svc2RulesError):
    """The manifests or options are invalid; carries every problem found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class UsageError(Svc2RulesError):
    """The command line or configuration file is invalid."""


class BackendError(Svc2RulesError):
    """A backend cannot express what the model asks for."""


class ApplyError(Svc2RulesError):
    """Loading rules onto the host failed; the host keeps its previous rules."""


class LockBusyError(ApplyError):
    """Another run holds the lock (ours or the xtables lock): retry later."""


# Integers beyond this many bits are described, not printed: int -> str is quadratic, and Python
# refuses it past 4300 digits.
_PRINTED_INT_BITS = 1024


def quote_value(value: object, limit: int = 64) -> str:
    """Quote an offending value for a message (JSON, ASCII only), shortened when long.

    Only what can show is encoded: a 200 MB string or a million-item list costs `limit`.
    """
    try:
        text = json.dumps(_clipped(value, [limit + 1]), ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = reprlib.repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class _Described(str):
    """A value quote_value describes instead of printing (a huge integer)."""


def _clipped(value: object, budget: list[int]) -> object:
    """`value` cut to what its first `budget[0]` characters of JSON need: the JSON of the cut
    value starts as the JSON of the value does. The budget, shared by the whole walk, is charged
    at most what each part writes, so a cut value still writes more than the budget."""
    if budget[0] <= 0:
        return None
    if isinstance(value, str | bytes):
        remaining = budget[0]
        budget[0] -= len(value) + 2
        return value if budget[0] >= 0 else value[:remaining]
    if isinstance(value, bool) or value is None:
        budget[0] -= 4
        return value
    if isinstance(value, int):
        if value.bit_length() > _PRINTED_INT_BITS:
            budget[0] = 0
            return _Described(f"<an integer of about {int(value.bit_length() * 0.30103)} digits>")
        budget[0] -= len(str(value))
        return value
    if isinstance(value, float):
        budget[0] -= 3
        return value
    if isinstance(value, list | tuple):
        items: list[object] = []
        budget[0] -= 2  # the brackets
        for item in value:
            if budget[0] <= 0:
                break
            if items:
                budget[0] -= 2  # ", "
            items.append(_clipped(item, budget))
        return items
    if isinstance(value, dict):
        out: dict[object, object] = {}
        budget[0] -= 2
        for key, item in value.items():
            if budget[0] <= 0:
                break
            budget[0] -= 4 if out else 2  # ", " and ": "
            clipped_key = _clipped(key, budget) if isinstance(key, str) else key
            out[clipped_key] = _clipped(item, budget)
        return out
    return value
