"""`svc2rules apply|diff|cleanup --backend userspace` with the real kernel, in a private network
namespace: applying twice leaves one jump per built-in chain and the new rules, the same input
again writes nothing, and cleanup leaves nothing of ours (issue 19)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svc2rules.apply.engine import ApplyInput, ApplyOptions, apply_plan, cleanup_host, diff_plan
from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import ChangeKind
from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.layout import build_layout
from svc2rules.load import Source
from tests.backends.userspace.helpers import CONFIG, plan_of
from tests.conftest import endpoint_slice, service
from tests.userspace.netns import NetnsLoop, root_only

pytestmark = [
    *root_only,
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables is not installed"),
]
OPTIONS: RenderOptions[Addressing] = RenderOptions(backend=Addressing.create("20000-20999"))
FIRST = [service(), endpoint_slice()]
SECOND = [service(name="svc2", clusterIP="172.30.0.42"), endpoint_slice("svc2")]


@pytest.fixture
def netns() -> Iterator[NetnsLoop]:
    ns = NetnsLoop()
    yield ns
    ns.close()


def apply_input(objects: list[dict[str, Any]]) -> ApplyInput:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return ApplyInput([Source("cluster.json", data)], CONFIG, "userspace", OPTIONS)


def test_applying_twice_leaves_one_jump_per_builtin_chain_and_the_new_rules(
    netns: NetnsLoop, tmp_path: Path
) -> None:
    options = ApplyOptions(state_dir=tmp_path)
    netns.call(lambda: apply_plan(apply_input(FIRST), options))
    report = netns.call(lambda: apply_plan(apply_input(SECOND), options))
    assert report.written
    saved = netns.sh("iptables-save")
    for chain in ("PREROUTING", "OUTPUT"):
        assert saved.count(f"-A {chain} -m comment") == 1, saved
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        assert saved.count(f"-A {chain} -m conntrack") == 1, saved
    port = build_layout(plan_of(SECOND), OPTIONS.backend.port_range).listeners[0].port  # type: ignore[union-attr]
    assert "-d 172.30.0.42/32 -p tcp" in saved and f"--to-ports {port}" in saved
    assert "172.30.0.41" not in saved
    again = netns.call(lambda: apply_plan(apply_input(SECOND), options))
    assert not again.written


def test_diff_shows_what_an_apply_would_change(netns: NetnsLoop, tmp_path: Path) -> None:
    options = ApplyOptions(state_dir=tmp_path)
    netns.call(lambda: apply_plan(apply_input(FIRST), options))
    assert netns.call(lambda: diff_plan(apply_input(FIRST), options)) == ("", False)
    text, differs = netns.call(lambda: diff_plan(apply_input(SECOND), options))
    assert differs and "+iptables nat: -A SVC2R-USERSPACE-PORTALS -d 172.30.0.42/32" in text


def test_cleanup_removes_every_chain_and_jump_of_ours_and_only_those(
    netns: NetnsLoop, tmp_path: Path
) -> None:
    netns.sh("iptables", "-t", "nat", "-N", "OTHER")
    netns.sh("iptables", "-t", "nat", "-A", "PREROUTING", "-j", "OTHER")
    options = ApplyOptions(state_dir=tmp_path)
    netns.call(lambda: apply_plan(apply_input(FIRST), options))
    # The state file lost (or another prefix's state): cleanup still finds our chains by name.
    (tmp_path / "userspace.json").unlink()
    report = netns.call(lambda: cleanup_host("userspace", OPTIONS, options))
    assert report.kind is ChangeKind.CLEANUP and report.written
    saved = netns.sh("iptables-save")
    assert "USERSPACE" not in saved
    assert "-A PREROUTING -j OTHER" in saved
    assert netns.call(lambda: cleanup_host("userspace", OPTIONS, options)).kind is ChangeKind.NONE
