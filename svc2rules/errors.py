"""Typed errors. The CLI is the only place that turns them into exit codes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in the input, pointing at a file, an object and a field."""

    source: str
    message: str
    kind: str | None = None
    obj: str | None = None  # "namespace/name"
    field: str | None = None

    def __str__(self) -> str:
        parts = [self.source]
        if self.kind is not None:
            parts.append(f"{self.kind} {self.obj or '<unnamed>'}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(_one_line(p) for p in parts)


def _one_line(text: str) -> str:
    # A diagnostic is exactly one line on stderr, whatever the manifest contained.
    return text.replace("\r", "\\r").replace("\n", "\\n")


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


def quote_value(value: object, limit: int = 64) -> str:
    """Quote an offending value for a message, shortened when long."""
    import json

    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
