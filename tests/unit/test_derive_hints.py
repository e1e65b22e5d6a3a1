"""Topology hints on derived slices, as the EndpointSlice controller's reconciler sets them."""

from __future__ import annotations

from typing import Any

import pytest

from svc2rules.resolve.hints import milli_cpu
from tests.unit.derive_helpers import endpoints_of, node, pod, web_service

NODES = [node("node1", "z1"), node("node2", "z2")]
PODS = [
    pod("a", "10.180.0.1", node="node1"),
    pod("b", "10.180.0.2", node="node2"),
    pod("c", "10.180.0.3", node="node2", ready=False),
]


def hints(
    svc: dict[str, Any], pods: list[dict[str, Any]] = PODS, nodes: list[dict[str, Any]] = NODES
) -> dict[str, Any]:
    return {ep["targetRef"]["name"]: ep.get("hints") for ep in endpoints_of(svc, pods, nodes)}


@pytest.mark.parametrize("distribution", ["PreferClose", "PreferSameZone"])
def test_prefer_close_hints_ready_endpoints_for_their_own_zone(distribution: str) -> None:
    """trafficdist.preferCloseHeuristic.update (trafficdist/trafficdist.go): a ForZones hint of
    the endpoint's zone on ready endpoints only; no node hints."""
    assert hints(web_service(trafficDistribution=distribution)) == {
        "a": {"forZones": [{"name": "z1"}]},
        "b": {"forZones": [{"name": "z2"}]},
        "c": None,
    }


def test_prefer_same_node_adds_a_node_hint() -> None:
    """preferCloseHeuristic{generateNodeHints: PreferSameNode} (the PreferSameTrafficDistribution
    gate, on by default since 1.34, makes it valid: Reconciler.validTrafficDistribution)."""
    assert hints(web_service(trafficDistribution="PreferSameNode")) == {
        "a": {"forZones": [{"name": "z1"}], "forNodes": [{"name": "node1"}]},
        "b": {"forZones": [{"name": "z2"}], "forNodes": [{"name": "node2"}]},
        "c": None,
    }


def test_prefer_close_without_zones_gives_no_hints() -> None:
    """preferCloseHeuristic.update: no zone and no node hint -> Hints = nil."""
    assert set(
        hints(web_service(trafficDistribution="PreferClose"), nodes=[node("node1"), node("node2")]).values()
    ) == {None}


@pytest.mark.parametrize("distribution", [None, "Bogus"])
def test_no_or_an_unknown_traffic_distribution_gives_no_hints(distribution: str | None) -> None:
    """Reconciler.validTrafficDistribution false -> topologycache.RemoveHintsFromSlices."""
    svc = web_service() if distribution is None else web_service(trafficDistribution=distribution)
    assert set(hints(svc).values()) == {None}


def auto(**spec: Any) -> dict[str, Any]:
    svc = web_service(**spec)
    svc["metadata"]["annotations"] = {"service.kubernetes.io/topology-mode": "Auto"}
    return svc


def test_the_topology_annotation_overrides_traffic_distribution() -> None:
    """reconcileByAddressType: canUseTrafficDistribution requires !hintsEnabled(annotations);
    with the annotation, TopologyCache.AddHints decides, and Nodes without allocatable CPU are
    insufficient node info (TopologyCache.SetNodes): no hints."""
    assert set(hints(auto(trafficDistribution="PreferClose")).values()) == {None}


def cpu_nodes(*zones_and_cpu: tuple[str, str]) -> list[dict[str, Any]]:
    return [node(f"node{i + 1}", zone, cpu=cpu) for i, (zone, cpu) in enumerate(zones_and_cpu)]


def test_topology_mode_auto_hints_each_ready_endpoint_for_its_zone_when_balanced() -> None:
    """TopologyCache.AddHints step 1: a same-zone hint for every ready endpoint; the zones hold
    their share of the CPU, so nothing is redistributed."""
    pods = [pod(f"p{i}", f"10.180.0.{i + 1}", node=f"node{i % 2 + 1}") for i in range(4)]
    got = hints(auto(), pods, cpu_nodes(("z1", "4"), ("z2", "4000m")))
    assert got == {
        "p0": {"forZones": [{"name": "z1"}]},
        "p1": {"forZones": [{"name": "z2"}]},
        "p2": {"forZones": [{"name": "z1"}]},
        "p3": {"forZones": [{"name": "z2"}]},
    }


def test_topology_mode_auto_gives_endpoints_of_a_zone_over_its_share_to_one_under_it() -> None:
    """getAllocations, getGivingAndReceivingZones, redistributeHints: 4 endpoints in z1, none
    in z2 of equal CPU -> z2 should get 2 (minimum ceil(2 / 1.2) = 2): two z1 endpoints are
    hinted for z2."""
    pods = [pod(f"p{i}", f"10.180.0.{i + 1}", node="node1") for i in range(4)]
    got = hints(auto(), pods, cpu_nodes(("z1", "2"), ("z2", "2")))
    assert sorted(h["forZones"][0]["name"] for h in got.values()) == ["z1", "z1", "z2", "z2"]


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        (lambda: cpu_nodes(("z1", "4")), "one zone"),
        (lambda: cpu_nodes(("z1", "4"), ("z2", "0")), "a node without CPU"),
        (lambda: cpu_nodes(("z1", "4"), ("", "4")), "a node without zone"),
        (
            lambda: [*cpu_nodes(("z1", "4")), node("node2", "z2", cpu="4", ready=False)],
            "the other zone's node not ready",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_topology_mode_auto_without_sufficient_node_info_gives_no_hints(nodes: Any, why: str) -> None:
    """TopologyCache.SetNodes: any counted Node without zone or CPU, or fewer than 2 zones ->
    insufficient node info -> AddHints removes hints (not-ready Nodes are not counted)."""
    pods = [pod(f"p{i}", f"10.180.0.{i + 1}", node="node1") for i in range(4)]
    assert set(hints(auto(), pods, nodes()).values()) == {None}, why


def test_topology_mode_auto_with_fewer_endpoints_than_zones_gives_no_hints() -> None:
    """getAllocations: len(cpuRatiosByZone) > numEndpoints -> insufficient endpoints."""
    pods = [pod("p0", "10.180.0.1", node="node1")]
    assert hints(auto(), pods, cpu_nodes(("z1", "4"), ("z2", "4"))) == {"p0": None}


def test_control_plane_nodes_do_not_count() -> None:
    """hasExcludedLabels: node-role.kubernetes.io/control-plane or master Nodes are ignored."""
    pods = [pod(f"p{i}", f"10.180.0.{i + 1}", node="node1") for i in range(4)]
    nodes = [
        *cpu_nodes(("z1", "4")),
        node("cp", "z2", cpu="4", labels={"node-role.kubernetes.io/control-plane": ""}),
    ]
    assert set(hints(auto(), pods, nodes).values()) == {None}


def test_the_deprecated_annotation_wins() -> None:
    """hintsEnabled (utils.go): topology-aware-hints is read first when both are set."""
    svc = web_service(trafficDistribution="PreferClose")
    svc["metadata"]["annotations"] = {
        "service.kubernetes.io/topology-aware-hints": "disabled",
        "service.kubernetes.io/topology-mode": "Auto",
    }
    assert hints(svc)["a"] == {"forZones": [{"name": "z1"}]}


@pytest.mark.parametrize(
    ("quantity", "millis"),
    [("4", 4000), ("3800m", 3800), ("1.5", 1500), ("0.0001", 1), ("2k", 2_000_000), ("", 0), ("x", 0)],
)
def test_cpu_quantities_as_milli_values(quantity: str, millis: int) -> None:
    """resource.Quantity.MilliValue (rounded up)."""
    assert milli_cpu(quantity) == millis
