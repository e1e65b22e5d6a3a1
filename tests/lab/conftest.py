"""Fixtures of the dataplane lab: ``lab`` (one throw-away topology per test) and ``backend``."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Generator, Iterator

import pytest

from .explain_check import check_explain
from .lab import Lab
from .loaders import Loader, available_loaders

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def require_root() -> None:
    """Skip (never silently pass) where the lab cannot run."""
    if os.geteuid() != 0:
        pytest.skip("dataplane lab needs root (network namespaces, netfilter in the real kernel)")
    missing = [t for t in ("ip", "iptables-restore") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"dataplane lab needs {', '.join(missing)}")


@functools.cache
def _loaders() -> tuple[Loader, ...]:
    return tuple(available_loaders())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        loaders = _loaders()
        metafunc.parametrize("backend", loaders, ids=[ldr.name for ldr in loaders])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A fresh ext/node/pods/sink topology, torn down afterwards whatever happens."""
    require_root()
    with Lab.create() as the_lab:
        yield the_lab
        call = request.node.stash.get(_REPORTS, {}).get("call")
        if call is not None and call.failed and the_lab.loaded:
            # Shows up under "Captured stdout teardown" of the failing test.
            print(the_lab.dump_state())
        elif call is not None and call.passed:
            # The kernel agreed with the scenario; `svc2rules explain` must agree with both.
            check_explain(the_lab)
