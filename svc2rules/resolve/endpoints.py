"""Endpoints of each service port, from EndpointSlices (or legacy Endpoints).

Follows kube-proxy's EndpointSliceCache: slices are grouped by the
`kubernetes.io/service-name` label, ports are matched by name and protocol only
(never by targetPort), each endpoint uses its first address, duplicates are
merged by `ip:port` (a local copy wins) and the result is sorted by that string.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from svc2rules.addresses import canonical_ip
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Protocol
from svc2rules.model.endpoints import SKIP_MIRROR_LABEL, Endpoints
from svc2rules.model.endpointslice import HEADLESS_LABEL, EndpointSlice

# (namespace, service name)
ServiceRef = tuple[str, str]
# (port name, protocol, family)
PortRef = tuple[str, Protocol, IPFamily]


@dataclass(frozen=True, slots=True)
class SliceEndpointView:
    """The part of an endpoint that does not depend on the port."""

    ip: str
    ready: bool
    serving: bool
    terminating: bool
    node_name: str | None
    zone: str | None
    zone_hints: tuple[str, ...]
    node_hints: tuple[str, ...]
    hostname: str | None


@dataclass(frozen=True, slots=True)
class NormalizedSlice:
    """An EndpointSlice reduced to what the proxy reads; legacy Endpoints map onto it too."""

    namespace: str
    service: str
    name: str
    family: IPFamily
    ports: tuple[tuple[str, Protocol, int], ...]
    endpoints: tuple[SliceEndpointView, ...]
    # Labelled service.kubernetes.io/headless: kube-proxy ignores it, DNS publishes it.
    headless: bool = False


def normalize_slice(sl: EndpointSlice) -> NormalizedSlice | None:
    service = sl.service_name
    if not service or sl.address_type == "FQDN":
        return None
    family = IPFamily(sl.address_type)
    ports = tuple(
        (p.name, Protocol(p.protocol or "TCP"), p.port)
        for p in (sl.ports or [])
        if p.name is not None and p.port  # kube-proxy ignores ports without a name or number
    )
    views = []
    for ep in sl.endpoints or []:
        if not ep.addresses:
            continue
        c = ep.conditions
        hints = ep.hints
        views.append(
            SliceEndpointView(
                ip=_canonical_ip(ep.addresses[0]),
                ready=c.ready is None or c.ready,
                serving=c.serving is None or c.serving,
                terminating=c.terminating is not None and c.terminating,
                node_name=ep.node_name,
                zone=ep.zone,
                zone_hints=tuple(sorted(z.name for z in hints.for_zones)) if hints else (),
                node_hints=tuple(sorted(n.name for n in hints.for_nodes)) if hints else (),
                hostname=ep.hostname,
            )
        )
    return NormalizedSlice(
        sl.namespace, service, sl.name, family, ports, tuple(views), HEADLESS_LABEL in sl.metadata.labels
    )


def mirror_endpoints(eps: Endpoints, publish_not_ready: bool) -> list[NormalizedSlice]:
    """Map legacy Endpoints the way the EndpointSlice mirroring controller does."""
    if eps.metadata.labels.get(SKIP_MIRROR_LABEL) == "true":
        return []
    out = []
    for index, subset in enumerate(eps.subsets):
        ports = tuple((p.name, Protocol(p.protocol), p.port) for p in subset.ports)
        by_family: dict[IPFamily, list[SliceEndpointView]] = defaultdict(list)
        for addresses, is_ready in ((subset.addresses, True), (subset.not_ready_addresses, False)):
            for a in addresses:
                ip = _canonical_ip(a.ip)
                family = IPFamily.IPv6 if ":" in ip else IPFamily.IPv4
                by_family[family].append(
                    SliceEndpointView(
                        ip=ip,
                        ready=is_ready or publish_not_ready,
                        # The mirroring controller leaves serving unset, which kube-proxy reads as true.
                        serving=True,
                        terminating=False,
                        node_name=a.node_name,
                        zone=None,
                        zone_hints=(),
                        node_hints=(),
                        hostname=a.hostname,
                    )
                )
        for family in sorted(by_family):
            out.append(
                NormalizedSlice(
                    eps.namespace, eps.name, f"{eps.name}-{index}", family, ports, tuple(by_family[family])
                )
            )
    return out


def endpoints_by_port(
    slices: Iterable[NormalizedSlice], node_name: str | None
) -> dict[ServiceRef, dict[PortRef, tuple[Endpoint, ...]]]:
    """Merge slices into sorted, de-duplicated endpoint lists per service port."""
    merged: dict[ServiceRef, dict[PortRef, dict[str, Endpoint]]] = defaultdict(lambda: defaultdict(dict))
    for sl in sorted(slices, key=lambda s: (s.namespace, s.service, s.name, s.family)):
        per_port = merged[(sl.namespace, sl.service)]
        for port_name, protocol, port in sl.ports:
            bucket = per_port[(port_name, protocol, sl.family)]
            for view in sl.endpoints:
                is_local = node_name is not None and view.node_name == node_name
                ep = Endpoint(
                    ip=view.ip,
                    port=port,
                    ready=view.ready,
                    serving=view.serving,
                    terminating=view.terminating,
                    is_local=is_local,
                    node_name=view.node_name,
                    zone=view.zone,
                    zone_hints=view.zone_hints,
                    node_hints=view.node_hints,
                    hostname=view.hostname,
                )
                if ep.address not in bucket or is_local:
                    bucket[ep.address] = ep
    return {
        svc: {port: tuple(bucket[k] for k in sorted(bucket)) for port, bucket in ports.items()}
        for svc, ports in merged.items()
    }


def _canonical_ip(text: str) -> str:
    parsed = canonical_ip(text)
    if parsed is None:  # validation guarantees this never happens
        raise ValueError(f"invalid IP {text!r}")
    return parsed[1]
