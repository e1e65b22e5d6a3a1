"""`--apply-rules`: the userspace rules go into the kernel, and reloading keeps one jump each."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from svc2rules.userspace.addressing import Addressing
from svc2rules.userspace.install import install_rules
from svc2rules.userspace.layout import build_layout
from tests.backends.userspace.helpers import plan_of
from tests.conftest import endpoint_slice, service
from tests.userspace.netns import NetnsLoop, root_only

pytestmark = [
    *root_only,
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables is not installed"),
]


@pytest.fixture
def netns() -> Iterator[NetnsLoop]:
    ns = NetnsLoop()
    yield ns
    ns.close()


def test_installing_twice_leaves_one_jump_per_builtin_chain_and_the_new_rules(netns: NetnsLoop) -> None:
    addressing = Addressing.create("20000-20999")
    first = plan_of([service(), endpoint_slice()])
    second = plan_of([service(name="svc2", clusterIP="172.30.0.42"), endpoint_slice("svc2")])
    netns.call(lambda: install_rules(first, addressing, "SVC2R"))
    netns.call(lambda: install_rules(second, addressing, "SVC2R"))
    saved = netns.sh("iptables-save")
    for chain in ("PREROUTING", "OUTPUT"):
        assert saved.count(f"-A {chain} -m comment") == 1, saved
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        assert saved.count(f"-A {chain} -m conntrack") == 1, saved
    port = build_layout(second, addressing.port_range).listeners[0].port
    assert "-d 172.30.0.42/32 -p tcp" in saved and f"--to-ports {port}" in saved
    assert "172.30.0.41" not in saved
