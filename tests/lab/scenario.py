"""Helpers for scenario tests: compile-and-load with the real CLI, spread statistics."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from .lab import Deployment, Lab
from .loaders import CompilerMissing, Loader, compile_manifest
from .manifests import manifest

# chi-square critical values at p = 1e-6 by degrees of freedom. A dozen checks run per suite run, so
# p = 0.001 would flake about once in 80 runs; a real skew (one endpoint at 1/2 instead of 1/4 over
# 240 connections gives chi2 ~ 80) is still far beyond these.
_CHI2_CRIT = {1: 23.93, 2: 27.63, 3: 30.66, 4: 33.38, 5: 35.89, 6: 38.26, 7: 40.52, 8: 42.70, 9: 44.81}


def deploy(lab: Lab, backend: Loader, *docs: dict[str, Any], masquerade_all: bool = False) -> str:
    """Compile with the real CLI for this backend and load the result into the lab's node."""
    source = manifest(*docs)
    try:
        text = compile_manifest(backend.name, source, masquerade_all=masquerade_all)
    except CompilerMissing as exc:
        pytest.skip(str(exc))
    lab.load(backend, text)
    lab.deployments.append(Deployment(backend.name, source, masquerade_all, len(lab.history)))
    return text


def chi2_uniform(counts: Counter[str], expected_keys: set[str]) -> float:
    n = sum(counts.values())
    exp = n / len(expected_keys)
    return sum((counts.get(k, 0) - exp) ** 2 / exp for k in expected_keys)


def assert_uniform(counts: Counter[str], expected_keys: set[str], context: str) -> None:
    """Every expected key was hit, and the spread passes a chi-square test at p = 1e-6."""
    if set(counts) != expected_keys:
        raise AssertionError(f"hit {sorted(counts)}, expected {sorted(expected_keys)}: {context}")
    chi2 = chi2_uniform(counts, expected_keys)
    if chi2 >= _CHI2_CRIT[len(expected_keys) - 1]:
        raise AssertionError(f"not uniform, chi2={chi2:.1f}: {context}")


def eps(ips: list[str], port: int) -> set[str]:
    """The ``endpoint`` strings of ``ips`` on ``port``."""
    return {f"{ip}:{port}" for ip in ips}
