"""The library entry points: manifests -> plan (svc2rules.compile) -> output (a backend's render).

A thin facade over svc2rules.compile, the one compile path every command uses. No typer here and
no exit codes: failures are typed exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from svc2rules.backends import Artifact, RenderOptions, get_backend
from svc2rules.compile import compile_sources
from svc2rules.compile.core import validate_input
from svc2rules.compile.read import read_whole
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic
from svc2rules.ir import Plan
from svc2rules.load import Source, read_sources
from svc2rules.model.meta import KubeObject


@dataclass
class Compiled:
    plan: Plan
    warnings: list[Diagnostic] = field(default_factory=list)


def load_objects(sources: Iterable[Source]) -> tuple[list[tuple[str, KubeObject]], list[Diagnostic]]:
    """Parse and validate every source; raise InputError listing every problem found."""
    validated = validate_input(read_whole(sources))
    return validated.objects, validated.warnings


def build_plan(sources: Iterable[Source], config: ProxyConfig) -> Compiled:
    compiled = compile_sources(sources, config)
    return Compiled(compiled.plan(), compiled.warnings)


def plan_from_paths(paths: Sequence[str], recursive: bool, stdin: BinaryIO, config: ProxyConfig) -> Compiled:
    return build_plan(read_sources(paths, recursive=recursive, stdin=stdin), config)


def render(plan: Plan, backend: str, options: RenderOptions[Any] | None = None) -> Artifact:
    return get_backend(backend).render(plan, options or RenderOptions())
