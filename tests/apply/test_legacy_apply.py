"""Legacy addresses (issue 14, point 6) applied on the real kernel: an input with leading-zero
addresses loads (exit 0, one warning per object) exactly the rules of the same input written
canonically, and later applies (the compile cache vouching for the unchanged objects) read them
the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import BACKENDS, Host

pytestmark = pytest.mark.root

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "legacy-addresses"


@pytest.mark.parametrize("backend", BACKENDS)
def test_legacy_addresses_load_as_their_canonical_form(host: Host, tmp_path: Path, backend: str) -> None:
    legacy = GOLDEN / "input.yaml"
    canonical = GOLDEN / "canonical.yaml"

    first = host.cli("apply", "-f", str(legacy), backend=backend)
    assert first.returncode == 0, first.stderr
    warnings = [line for line in first.stderr.splitlines() if "leading zeros" in line]
    assert len(warnings) == 4, first.stderr  # two Services, a slice, an Endpoints
    loaded = host.ours(backend)
    assert "172.30.0.41" in loaded and "10.180.0.43" in loaded
    for written in ("172.30.0.041", "010.180.000.041", "010.180.0.043", "192.168.099.010", "198.51.100.07"):
        assert written not in loaded

    # The canonical input is the same ruleset: nothing to change.
    same = host.cli("apply", "-f", str(canonical), backend=backend)
    assert same.returncode == 0, same.stderr
    assert host.ours(backend) == loaded

    # Again from the legacy input, then with one endpoint moved: the cache vouches for the
    # unchanged legacy Service, which is resolved again from its word.
    again = host.cli("apply", "-f", str(legacy), backend=backend)
    assert again.returncode == 0, again.stderr
    assert host.ours(backend) == loaded
    moved = tmp_path / "moved.yaml"
    moved.write_text(legacy.read_text().replace("10.180.1.42", "10.180.1.52"))
    changed = host.cli("apply", "-f", str(moved), backend=backend)
    assert changed.returncode == 0, changed.stderr
    after = host.ours(backend)
    assert "10.180.1.52" in after and "10.180.1.42" not in after and "172.30.0.41" in after
