"""Legacy addresses (issue 14, point 6) applied on the real kernel: an input with leading-zero
addresses loads (exit 0, one warning per object) exactly the rules of the same input written
canonically, and later applies, whose compile cache vouches for the unchanged objects of a JSON
List without validating them again, read them the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import BACKENDS, Host

pytestmark = pytest.mark.root

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "legacy-addresses"


def as_list(source: Path, target: Path) -> list[dict[str, Any]]:
    """The objects of a YAML stream written as the JSON List `kubectl get -o json` prints."""
    items = [item for item in yaml.safe_load_all(source.read_text()) if item]
    target.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return items


def legacy_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "leading zeros" in line]


@pytest.mark.parametrize("backend", BACKENDS)
def test_legacy_addresses_load_as_their_canonical_form(host: Host, tmp_path: Path, backend: str) -> None:
    legacy, canonical = tmp_path / "legacy.json", tmp_path / "canonical.json"
    items = as_list(GOLDEN / "input.yaml", legacy)
    as_list(GOLDEN / "canonical.yaml", canonical)

    first = host.cli("apply", "-f", str(legacy), backend=backend)
    assert first.returncode == 0, first.stderr
    assert len(legacy_lines(first.stderr)) == 4, first.stderr  # two Services, a slice, an Endpoints
    loaded = host.ours(backend)
    assert "172.30.0.41" in loaded and "10.180.0.43" in loaded
    for written in ("172.30.0.041", "010.180.000.041", "010.180.0.043", "192.168.099.010", "198.51.100.07"):
        assert written not in loaded

    # The canonical input is the same ruleset.
    same = host.cli("apply", "-f", str(canonical), backend=backend)
    assert same.returncode == 0, same.stderr
    assert host.ours(backend) == loaded

    # The legacy input again: the same rules.
    again = host.cli("apply", "-f", str(legacy), backend=backend)
    assert again.returncode == 0, again.stderr
    assert host.ours(backend) == loaded

    # One endpoint moved: the cache vouches for the unchanged legacy Service (not validated
    # again, so not warned about again), which is resolved again from its canonical model.
    items[1]["endpoints"][1]["addresses"] = ["10.180.1.52"]
    legacy.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    changed = host.cli("apply", "-f", str(legacy), backend=backend)
    assert changed.returncode == 0, changed.stderr
    assert [line.split(": ")[2] for line in legacy_lines(changed.stderr)] == ["EndpointSlice ns1/legacy-lb-1"]
    after = host.ours(backend)
    assert "10.180.1.52" in after and "10.180.1.42" not in after and "172.30.0.41" in after
