"""kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go), shared by every backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from svc2rules.ir import Endpoint


@dataclass(frozen=True, slots=True)
class Categorized:
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]
    has_any: bool


def _filter(endpoints: Sequence[Endpoint], keep: Callable[[Endpoint], bool]) -> tuple[Endpoint, ...]:
    return tuple(ep for ep in endpoints if keep(ep))


def topology_mode(endpoints: Sequence[Endpoint], node_name: str | None, zone: str | None) -> str:
    """PreferSameNode / PreferSameZone when every ready endpoint carries hints, else ""."""
    has_for_node = has_for_zone = False
    all_node_hints = all_zone_hints = True
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.node_hints:
            all_node_hints = False
        elif node_name is not None and node_name in ep.node_hints:
            has_for_node = True
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone is not None and zone in ep.zone_hints:
            has_for_zone = True
    if all_node_hints and has_for_node:
        return "PreferSameNode"
    if all_zone_hints and has_for_zone:
        return "PreferSameZone"
    return ""


def _available_for_topology(ep: Endpoint, mode: str, node_name: str | None, zone: str | None) -> bool:
    if mode == "PreferSameNode":
        return node_name in ep.node_hints
    if mode == "PreferSameZone":
        return zone in ep.zone_hints
    return True


def categorize(
    endpoints: Sequence[Endpoint],
    *,
    uses_cluster: bool,
    uses_local: bool,
    node_name: str | None,
    zone: str | None,
) -> Categorized:
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    has_any = False
    if uses_cluster:
        mode = topology_mode(endpoints, node_name, zone)
        cluster = _filter(
            endpoints, lambda ep: ep.ready and _available_for_topology(ep, mode, node_name, zone)
        )
        if not cluster:
            # No ready endpoint anywhere: fall back to those still serving while terminating.
            cluster = _filter(endpoints, lambda ep: ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not uses_local:
        return Categorized(cluster, (), cluster, has_any)

    local_ready = local_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            local_terminating = local_terminating or ep.is_local
    if local_ready:
        local = _filter(endpoints, lambda ep: ep.is_local and ep.ready)
    elif local_terminating:
        local = _filter(endpoints, lambda ep: ep.is_local and ep.serving and ep.terminating)
    if not uses_cluster:
        return Categorized((), local, local, has_any)
    union = {ep.address: ep for ep in cluster}
    union.update({ep.address: ep for ep in local})
    reachable = tuple(union[k] for k in sorted(union))
    return Categorized(cluster, local, reachable, has_any)
