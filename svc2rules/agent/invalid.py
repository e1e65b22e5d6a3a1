"""What a lenient compile left out, said once per object (`apply --skip-invalid`, `run`)."""

from __future__ import annotations

from collections.abc import Iterable

from svc2rules.errors import Diagnostic


def left_out(problems: Iterable[Diagnostic]) -> list[str]:
    """One line per object (or unreadable source) left out: its first problem (file or event,
    object, field, message) and how many more it has."""
    first: dict[tuple[str, str | None, str | None], Diagnostic] = {}
    more: dict[tuple[str, str | None, str | None], int] = {}
    for problem in problems:
        key = (problem.source, problem.kind, problem.obj)
        if key in first:
            more[key] = more.get(key, 0) + 1
        else:
            first[key] = problem
    lines = []
    for key, problem in first.items():
        extra = more.get(key, 0)
        also = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
        what = "object" if problem.kind is not None else "source"
        lines.append(f"{problem}{also}; the {what} is left out")
    return lines
