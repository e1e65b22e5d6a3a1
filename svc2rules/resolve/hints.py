"""Topology hints as the EndpointSlice controller writes them on new slices.

The reconciler (staging/src/k8s.io/endpointslice `reconcileByAddressType`) takes one of two
ways, per address type over all of a Service's new endpoints:

* the topology annotation (`hintsEnabled`: `service.kubernetes.io/topology-aware-hints`, else
  `service.kubernetes.io/topology-mode`, set to `Auto` or `auto`; the TopologyAwareHints gate
  that makes the cache exist is on by default since 1.24): `TopologyCache.AddHints`,
  which spreads ready endpoints over zones in proportion to the allocatable CPU of the ready,
  non-control-plane Nodes (`SetNodes`, `getAllocations`, `getGivingAndReceivingZones`,
  `redistributeHints`), or writes no hints when the Nodes or endpoints do not allow it;
* otherwise a valid `trafficDistribution` (`validTrafficDistribution`: PreferClose, and
  PreferSameZone / PreferSameNode with the PreferSameTrafficDistribution gate, on by default in
  1.34 and GA in 1.35): `trafficdist.preferCloseHeuristic`, a hint for the endpoint's own zone
  (and node, for PreferSameNode) on every ready endpoint;
* neither: no hints.

Where the controller iterates a Go map (which zone gives or receives first), zones are taken
in name order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from svc2rules.model.node import Node
from svc2rules.model.service import Service

TOPOLOGY_AWARE_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"  # deprecated
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
PREFER_CLOSE = "PreferClose"
PREFER_SAME_ZONE = "PreferSameZone"
PREFER_SAME_NODE = "PreferSameNode"
TRAFFIC_DISTRIBUTIONS = (PREFER_CLOSE, PREFER_SAME_ZONE, PREFER_SAME_NODE)
_OVERLOAD_THRESHOLD = 0.2
_EXCLUDED_NODE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True, slots=True)
class EndpointHints:
    for_zones: tuple[str, ...] = ()
    for_nodes: tuple[str, ...] = ()


class HintTarget(Protocol):
    @property
    def ready(self) -> bool: ...
    @property
    def zone(self) -> str | None: ...
    @property
    def node_name(self) -> str | None: ...


def hints_enabled(annotations: Mapping[str, str]) -> bool:
    """hintsEnabled: the deprecated annotation wins when both are set."""
    value = annotations.get(TOPOLOGY_AWARE_HINTS_ANNOTATION)
    if value is None:
        value = annotations.get(TOPOLOGY_MODE_ANNOTATION)
    return value in ("Auto", "auto")


def traffic_distribution(service: Service) -> str | None:
    """The trafficDistribution the reconciler uses (validTrafficDistribution and no topology
    annotation), or None."""
    value = service.spec.traffic_distribution
    if value in TRAFFIC_DISTRIBUTIONS and not hints_enabled(service.metadata.annotations):
        return value
    return None


def hints_for(
    service: Service, endpoints: Sequence[HintTarget], nodes: Mapping[str, Node] | None
) -> list[EndpointHints | None]:
    """The hints of each endpoint (of one address type), in order."""
    if hints_enabled(service.metadata.annotations):
        return topology_hints(endpoints, nodes)
    distribution = traffic_distribution(service)
    if distribution is None:
        return [None] * len(endpoints)
    same_node = distribution == PREFER_SAME_NODE
    return [_prefer_close(ep, same_node) for ep in endpoints]


def _prefer_close(ep: HintTarget, same_node: bool) -> EndpointHints | None:
    """preferCloseHeuristic.update: only ready endpoints get hints."""
    if not ep.ready:
        return None
    zones = (ep.zone,) if ep.zone is not None else ()
    node_hints = (ep.node_name,) if ep.node_name is not None and same_node else ()
    return EndpointHints(zones, node_hints) if zones or node_hints else None


# -- the topology annotation: TopologyCache ---------------------------------------------------------


def cpu_ratios_by_zone(nodes: Mapping[str, Node] | None) -> dict[str, float] | None:
    """TopologyCache.SetNodes: each zone's share of the allocatable CPU of the ready Nodes that
    are not control-plane, or None when any such Node lacks a zone or CPU, or fewer than two
    zones remain (insufficient node info)."""
    if nodes is None:
        return None
    millis: dict[str, int] = {}
    for name in sorted(nodes):
        node = nodes[name]
        if any(label in node.metadata.labels for label in _EXCLUDED_NODE_LABELS) or not node.ready:
            continue
        cpu = milli_cpu(node.status.allocatable.get("cpu", ""))
        zone = node.zone
        if zone is None or not cpu:
            return None
        millis[zone] = millis.get(zone, 0) + cpu
    total = sum(millis.values())
    if total == 0 or len(millis) < 2:
        return None
    return {zone: cpu / total for zone, cpu in millis.items()}


@dataclass(frozen=True, slots=True)
class _Allocation:
    minimum: int
    maximum: int
    desired: float


def _allocations(ratios: Mapping[str, float], ready: int) -> dict[str, _Allocation] | None:
    """getAllocations: None when the endpoints cannot be spread below the overload threshold."""
    if len(ratios) > ready:
        return None
    remaining = ready
    minimums: dict[str, tuple[int, float]] = {}
    for zone in sorted(ratios):
        desired = ratios[zone] * ready
        minimum = math.ceil(desired * (1 / (1 + _OVERLOAD_THRESHOLD)))
        minimums[zone] = (minimum, max(desired, float(minimum)))
        remaining -= minimum
        if remaining < 0:
            return None
    minimum_total = sum(m for m, _ in minimums.values())
    return {
        zone: _Allocation(minimum, minimum + ready - minimum_total, desired)
        for zone, (minimum, desired) in minimums.items()
    }


def topology_hints(
    endpoints: Sequence[HintTarget], nodes: Mapping[str, Node] | None
) -> list[EndpointHints | None]:
    """TopologyCache.AddHints for new slices: every ready endpoint hinted for its own zone, then
    endpoints of zones over their share re-hinted for zones under it; no hints at all when the
    Nodes give no ratios, the endpoints are too few, or a ready endpoint has no zone."""
    none: list[EndpointHints | None] = [None] * len(endpoints)
    ratios = cpu_ratios_by_zone(nodes)
    ready = sum(1 for ep in endpoints if ep.ready)
    allocations = _allocations(ratios, ready) if ratios is not None else None
    if allocations is None:
        return none
    hinted: list[str | None] = []
    allocated: dict[str, int] = {}
    for ep in endpoints:
        if not ep.ready:
            hinted.append(None)
            continue
        if not ep.zone:
            return none
        allocated[ep.zone] = allocated.get(ep.zone, 0) + 1
        hinted.append(ep.zone)
    giving, receiving = _giving_and_receiving(allocations, allocated)
    for i, zone in enumerate(hinted):
        if not giving or not receiving:
            break
        if zone is None or giving.get(zone, 0) <= 0:
            continue
        to = next(z for z in sorted(receiving) if receiving[z] > 0)
        hinted[i] = to
        for table, key in ((giving, zone), (receiving, to)):
            table[key] -= 1
            if table[key] == 0:
                del table[key]
        allocated[to] = allocated.get(to, 0) + 1
        allocated[zone] -= 1
    if not allocated:
        return none
    return [EndpointHints((zone,)) if zone is not None else None for zone in hinted]


def _giving_and_receiving(
    allocations: Mapping[str, _Allocation], allocated: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """getGivingAndReceivingZones."""
    giving_desired: dict[str, float] = {}
    receiving_desired: dict[str, float] = {}
    for zone, allocation in allocations.items():
        hints = float(allocated.get(zone, 0))
        if hints > allocation.desired:
            giving_desired[zone] = hints - allocation.desired
        elif hints < allocation.desired:
            receiving_desired[zone] = allocation.desired - hints
    giving: dict[str, int] = {}
    receiving: dict[str, int] = {}
    while True:
        give_zone, to_give = _most(giving_desired)
        take_zone, to_take = _most(receiving_desired)
        if (
            not give_zone
            or not take_zone
            or (to_give < 1.0 and to_take < 1.0)
            or to_give < 0.5
            or to_take < 0.5
        ):
            return giving, receiving
        giving[give_zone] = giving.get(give_zone, 0) + 1
        giving_desired[give_zone] -= 1
        receiving[take_zone] = receiving.get(take_zone, 0) + 1
        receiving_desired[take_zone] -= 1


def _most(zones: Mapping[str, float]) -> tuple[str, float]:
    """getMost: the zone with the greatest value (ties: the first by name)."""
    best, most = "", 0.0
    for zone in sorted(zones):
        if zones[zone] > most:
            best, most = zone, zones[zone]
    return best, most


_SUFFIXES = {
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def milli_cpu(quantity: str) -> int:
    """resource.Quantity.MilliValue (rounded up) of a CPU quantity; 0 when unset or unreadable."""
    text = quantity.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, Decimal(1)
    try:
        value = Decimal(number) * scale * 1000
    except InvalidOperation:
        return 0
    if not value.is_finite() or value <= 0:
        return 0
    return math.ceil(value)
