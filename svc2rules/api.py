"""The library entry points behind the CLI: load -> validate -> resolve -> render.

No typer here and no exit codes: failures are typed exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from svc2rules.backends import Artifact, RenderOptions, get_backend
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic, InputError
from svc2rules.ir import Plan
from svc2rules.load import RawObject, Source, parse_source, read_sources
from svc2rules.model.meta import KubeObject
from svc2rules.model.registry import validate_objects
from svc2rules.resolve import resolve


@dataclass
class Compiled:
    plan: Plan
    warnings: list[Diagnostic] = field(default_factory=list)


def load_objects(sources: Iterable[Source]) -> tuple[list[tuple[str, KubeObject]], list[Diagnostic]]:
    """Parse and validate every source; raise InputError listing every problem found."""
    raw: list[RawObject] = []
    errors: list[Diagnostic] = []
    for source in sources:
        objects, problems = parse_source(source.name, source.data)
        raw.extend(objects)
        errors.extend(problems)
    validated = validate_objects(raw)
    errors.extend(validated.errors)
    if errors:
        raise InputError(errors)
    return validated.objects, validated.warnings


def build_plan(sources: Iterable[Source], config: ProxyConfig) -> Compiled:
    objects, warnings = load_objects(sources)
    resolution = resolve(objects, config)
    return Compiled(resolution.plan, warnings + resolution.warnings)


def plan_from_paths(paths: Sequence[str], recursive: bool, stdin: BinaryIO, config: ProxyConfig) -> Compiled:
    return build_plan(read_sources(paths, recursive=recursive, stdin=stdin), config)


def render(plan: Plan, backend: str, options: RenderOptions | None = None) -> Artifact:
    return get_backend(backend).render(plan, options or RenderOptions())
