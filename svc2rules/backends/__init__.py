"""Backend registry.

A backend is a subpackage of `svc2rules.backends` exposing `BACKEND`; it is found by
name, so adding one touches nothing outside its own package and templates.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from svc2rules.errors import UsageError
from svc2rules.ir import Plan


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Output choices that do not change the semantics."""

    comments: str = "auto"  # auto (kube-proxy: dropped above 1000 endpoints), always, never
    chain_prefix: str = "SVC2R"
    table: str = "svc2rules"
    jumps: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Artifact:
    """What a backend produced: the text to load, plus notes for the user."""

    backend: str
    text: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    summary: str
    render: Callable[[Plan, RenderOptions], Artifact]
    applier: Callable[..., Any] | None = None


def available_backends() -> list[str]:
    import svc2rules.backends as pkg

    return sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg and not m.name.startswith("_")
    )


def get_backend(name: str) -> Backend:
    if name not in available_backends():
        choices = ", ".join(available_backends())
        raise UsageError(f"unknown backend {name!r} (choose from: {choices})")
    module = importlib.import_module(f"svc2rules.backends.{name}")
    backend: Backend = module.BACKEND
    return backend
