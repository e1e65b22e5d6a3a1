"""Fixtures for the apply tests: a throw-away network namespace per test (a "host")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Host, drop_host, new_host, require_root


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    require_root()
    the_host = new_host(tmp_path)
    try:
        yield the_host
    finally:
        drop_host(the_host)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    return folder
