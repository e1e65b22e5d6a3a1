"""The default layout's ClusterIP guard (kube-proxy's cluster-ips set and cluster-ips-check chain,
pkg/proxy/nftables/proxier.go): present exactly when the plan has a service CIDR of the table's
family, one element per ClusterIP, loaded by the real nft, and kept up to date Service by
Service by the incremental applier."""

from __future__ import annotations

import json
from typing import Any

from svc2rules.backends import Comments, RenderOptions
from svc2rules.backends.applier import ChangeKind
from svc2rules.backends.nftables.apply import NftablesApplier
from svc2rules.compile import Compilation, MemoryMemo, compile_sources
from svc2rules.host.fake import FakeRunner
from svc2rules.load import Source
from svc2rules.syntax.nftables import read_tables
from svc2rules.syntax.nftables.fake import FakeNft
from tests.backends.nftables.helpers import CONFIG, nft_check, nft_text, plan_of, root_only
from tests.backends.nftables.test_render import chain, elements
from tests.conftest import endpoint, endpoint_slice, service

APPLIER = NftablesApplier(RenderOptions(comments=Comments.ALWAYS))


def service_cidr(*cidrs: str, name: str = "kubernetes") -> dict[str, Any]:
    kind = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"}
    return {**kind, "metadata": {"name": name}, "spec": {"cidrs": list(cidrs)}}


def two_port_service() -> dict[str, Any]:
    return service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 443}])


def test_no_service_cidr_no_guard() -> None:
    for text in (
        nft_text([service(), endpoint_slice()]),
        # A CIDR of the other family only: none in this family's table.
        nft_text([service(), endpoint_slice(), service_cidr("fd00:10:96::/112")]),
    ):
        assert "set cluster-ips" not in text and "cluster-ips-check" not in text


def test_the_guard_lists_each_cluster_ip_once_and_checks_after_dnat() -> None:
    objects = [
        two_port_service(),
        service("empty", clusterIP="172.30.0.9"),  # no endpoints: still an active ClusterIP
        service_cidr("172.30.0.0/16", "fd00:10:96::/112"),
        service_cidr("172.30.0.0/17", name="overlapping"),
    ]
    text = nft_text(objects)
    assert elements(text, "cluster-ips") == [
        '172.30.0.9 comment "ns1/empty"',
        '172.30.0.41 comment "ns1/svc1"',
    ]
    assert chain(text, "cluster-ips-check")[1:] == [
        'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        'ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"',
    ]
    for hooked in ("filter-forward", "filter-output"):
        assert chain(text, hooked)[-1] == "ct state new jump cluster-ips-check"
    assert not any("cluster-ips" in rule for rule in chain(text, "filter-input"))
    flagged = nft_text([service()], CONFIG.model_copy(update={"service_cidrs": ("172.30.0.0/16",)}))
    assert "ip daddr { 172.30.0.0/16 } drop" in flagged


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
def test_the_guard_loads() -> None:
    text = nft_text(
        [
            two_port_service(),
            endpoint_slice(),
            service_cidr("172.30.0.0/16"),
            service_cidr("10.96.0.0/12", name="b"),
        ]
    )
    result = nft_check(text)
    assert result.returncode == 0, result.stderr


def _compile(objects: list[dict[str, Any]], memo: MemoryMemo | None) -> Compilation:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return compile_sources([Source("cluster.json", data)], CONFIG, memo, fingerprint=memo is None)


def _cluster() -> list[dict[str, Any]]:
    return [
        service(),
        endpoint_slice(endpoints=[endpoint("10.180.0.1")]),
        service("other", clusterIP="172.30.1.1"),
        endpoint_slice("other", endpoints=[endpoint("10.181.0.1")]),
        service_cidr("172.30.0.0/16"),
    ]


def _live_cluster_ips(runner: FakeRunner) -> list[str]:
    (live,) = read_tables(runner.emulator(FakeNft).dump())
    found = live.find("set", "cluster-ips")
    assert found is not None
    return [key for key, _, _ in found.elements]


def test_a_new_or_removed_service_moves_its_cluster_ip_alone_and_a_new_service_cidr_reloads() -> None:
    runner = FakeRunner(FakeNft)
    first = _compile(_cluster(), None)
    change = APPLIER.plan_compiled(runner, None, False, first, "1-a")
    APPLIER.load(runner, change)
    assert _live_cluster_ips(runner) == ["172.30.0.41", "172.30.1.1"]

    grown = [*_cluster(), service("new", clusterIP="172.30.2.2"), endpoint_slice("new")]
    second = _compile(grown, MemoryMemo.of(first))
    assert change.new_state is not None
    added = APPLIER.plan_services(runner, change.new_state, second, "2-b")
    assert added is not None and added.kind == ChangeKind.INCREMENTAL
    assert "172.30.2.2" in added.payload
    APPLIER.validate(runner, added)
    APPLIER.load(runner, added)
    assert _live_cluster_ips(runner) == ["172.30.0.41", "172.30.1.1", "172.30.2.2"]

    shrunk = _cluster()[:2] + _cluster()[4:]
    third = _compile(shrunk, MemoryMemo.of(second))
    assert added.new_state is not None
    removed = APPLIER.plan_services(runner, added.new_state, third, "3-c")
    assert removed is not None and removed.kind == ChangeKind.INCREMENTAL
    APPLIER.load(runner, removed)
    assert _live_cluster_ips(runner) == ["172.30.0.41"]

    # Another service CIDR changes the guard's rule: the whole plan, not Service by Service.
    wider = [*shrunk, service_cidr("10.96.0.0/12", name="more")]
    fourth = _compile(wider, MemoryMemo.of(third))
    assert removed.new_state is not None
    assert APPLIER.plan_services(runner, removed.new_state, fourth, "4-d") is None
    assert plan_of(wider).service_cidrs == ("10.96.0.0/12", "172.30.0.0/16")
