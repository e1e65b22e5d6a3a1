"""The endpoints a headless Service publishes in DNS.

DNS reads slices the proxy ignores (those labelled `service.kubernetes.io/headless`, which is
how the EndpointSlice controller marks every slice of a headless Service), and one address
per IP rather than per service port: `<svc>.<ns>.svc` answers with every ready pod IP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from svc2rules.addresses import ip_sort_key
from svc2rules.ir import DnsEndpoint, PortRecord
from svc2rules.resolve.endpoints import NormalizedSlice, ServiceRef


def dns_endpoints_by_service(
    slices: Iterable[NormalizedSlice], publish_not_ready: Mapping[ServiceRef, bool]
) -> dict[ServiceRef, tuple[DnsEndpoint, ...]]:
    by_service: dict[ServiceRef, list[NormalizedSlice]] = defaultdict(list)
    for sl in slices:
        by_service[(sl.namespace, sl.service)].append(sl)
    return {
        ref: merge_endpoints(group, publish_not_ready.get(ref, False)) for ref, group in by_service.items()
    }


def merge_endpoints(slices: Iterable[NormalizedSlice], publish_not_ready: bool) -> tuple[DnsEndpoint, ...]:
    """One DnsEndpoint per IP, sorted by address.

    publishNotReadyAddresses makes every address ready, as the EndpointSlice controller does
    when it writes the slices (hand-written manifests may not have done it for us).
    """
    seen: dict[str, list[tuple[bool, str | None, frozenset[PortRecord]]]] = defaultdict(list)
    for sl in sorted(slices, key=lambda s: (s.name, s.family)):
        slice_ports = frozenset(PortRecord(name, proto, port) for name, proto, port in sl.ports)
        for view in sl.endpoints:
            seen[view.ip].append((view.ready or publish_not_ready, view.hostname, slice_ports))
    out = []
    for ip in sorted(seen, key=ip_sort_key):
        copies = seen[ip]
        # A ready copy of an address wins; not-ready copies add nothing to it.
        ready = any(r for r, _, _ in copies)
        chosen = [c for c in copies if c[0] == ready]
        hostname = next((h for _, h, _ in chosen if h is not None), None)
        ports = frozenset().union(*(p for _, _, p in chosen))
        out.append(DnsEndpoint(ip, hostname, ready, tuple(sorted(ports, key=_port_key))))
    return tuple(out)


def _port_key(port: PortRecord) -> tuple[str, str, int]:
    return (port.name, port.protocol.value, port.port)
