"""An incremental write ends exactly where a full load of the same input does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import BACKENDS, drop_host, new_host, require_root, synthetic_cluster

pytestmark = pytest.mark.root


def edited(text: str) -> str:
    """Remove one Service, add one, change another's endpoints, empty a fourth (REJECT)."""
    doc: dict[str, Any] = json.loads(text)
    items = doc["items"]
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in items}
    items.remove(by_name[("Service", "svc-00017")])
    items.remove(by_name[("EndpointSlice", "svc-00017-abcde")])
    by_name[("EndpointSlice", "svc-00005-abcde")]["endpoints"][0]["addresses"] = ["10.99.0.5"]
    by_name[("EndpointSlice", "svc-00030-abcde")]["endpoints"] = []
    # A third endpoint: no other Service has three (a new nftables endpoint-count group).
    extra = dict(by_name[("EndpointSlice", "svc-00040-abcde")]["endpoints"][0], addresses=["10.99.0.40"])
    by_name[("EndpointSlice", "svc-00040-abcde")]["endpoints"].append(extra)
    new = json.loads(synthetic_cluster(1, 2, shift=900))["items"]
    new[0]["metadata"]["name"] = "svc-added"
    new[0]["spec"]["clusterIP"] = "172.20.9.9"
    new[1]["metadata"]["name"] = "svc-added-abcde"
    new[1]["metadata"]["labels"]["kubernetes.io/service-name"] = "svc-added"
    items.extend(new)
    return json.dumps(doc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_incremental_equals_full(tmp_path: Path, backend: str) -> None:
    require_root()
    base = tmp_path / "base.json"
    base.write_text(synthetic_cluster(60, 2))
    changed = tmp_path / "changed.json"
    changed.write_text(edited(base.read_text()))
    inc, full = new_host(tmp_path, "inc"), new_host(tmp_path, "full")
    try:
        assert inc.cli("apply", "-f", str(base), backend=backend).returncode == 0
        proc = inc.cli("apply", "-f", str(changed), backend=backend)
        assert proc.returncode == 0, proc.stderr
        assert "incremental" in proc.stderr
        if backend == "iptables":
            assert "0 rule(s) edited in place" not in proc.stderr, proc.stderr  # SERVICES edited in place
        else:
            assert "set/map/chain(s) added" in proc.stderr, proc.stderr  # the new group, not a reload
        proc = full.cli("apply", "-f", str(changed), backend=backend)
        assert proc.returncode == 0 and "full" in proc.stderr, proc.stderr
        assert inc.ours(backend) == full.ours(backend)
        # And back again.
        proc = inc.cli("apply", "-f", str(base), backend=backend)
        assert proc.returncode == 0 and "incremental" in proc.stderr, proc.stderr
        assert full.cli("apply", "-f", str(base), backend=backend).returncode == 0
        assert inc.ours(backend) == full.ours(backend)
    finally:
        drop_host(inc)
        drop_host(full)


def test_a_rule_inserted_into_our_chain_does_not_shift_in_place_edits(tmp_path: Path) -> None:
    require_root()
    base = tmp_path / "base.json"
    base.write_text(synthetic_cluster(60, 2))
    changed = tmp_path / "changed.json"
    changed.write_text(edited(base.read_text()))
    inc, full = new_host(tmp_path, "inc"), new_host(tmp_path, "full")
    try:
        assert inc.cli("apply", "-f", str(base)).returncode == 0
        # Someone inserts into our dispatch chain: the state's positions are now off by one.
        inc.run(["iptables", "-t", "nat", "-I", "SVC2R-SERVICES", "1", "-d", "192.0.2.1", "-j", "RETURN"])
        proc = inc.cli("apply", "-f", str(changed))
        assert proc.returncode == 0, proc.stderr
        assert full.cli("apply", "-f", str(changed)).returncode == 0
        assert inc.ours_iptables() == full.ours_iptables()
    finally:
        drop_host(inc)
        drop_host(full)
