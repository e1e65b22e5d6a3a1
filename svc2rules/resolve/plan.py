"""Services + endpoints -> Plan: one ServicePort per (Service, port, IP family)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svc2rules.addresses import canonical_ip, ip_sort_key
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic
from svc2rules.ir import (
    DnsEndpoint,
    Endpoint,
    IPFamily,
    Plan,
    PortRecord,
    Protocol,
    ServicePort,
    ServicePortKey,
    ServiceRecord,
)
from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.service import SCHEDULER_ANNOTATION, Service, is_proxied_by
from svc2rules.resolve.categorize import categorize
from svc2rules.resolve.dns import dns_endpoints_by_service
from svc2rules.resolve.endpoints import (
    NormalizedSlice,
    PortRef,
    ServiceRef,
    endpoints_by_port,
    mirror_endpoints,
    normalize_slice,
)


@dataclass
class Resolution:
    plan: Plan
    warnings: list[Diagnostic] = field(default_factory=list)


def resolve(objects: Sequence[tuple[str, KubeObject]], config: ProxyConfig) -> Resolution:
    """Resolve validated objects into the model kube-proxy would compute on this node."""
    services: list[tuple[str, Service]] = []
    slices: list[NormalizedSlice] = []
    dns_slices: list[NormalizedSlice] = []
    legacy: list[Endpoints] = []
    for source, obj in objects:
        if isinstance(obj, Service):
            services.append((source, obj))
        elif isinstance(obj, EndpointSlice):
            normalized = normalize_slice(obj)
            if normalized is not None:
                dns_slices.append(normalized)
                if not normalized.headless:
                    slices.append(normalized)
        elif isinstance(obj, Endpoints):
            legacy.append(obj)

    # Legacy Endpoints only count for Services no EndpointSlice speaks for.
    covered = {(s.namespace, s.service) for s in slices}
    dns_covered = {(s.namespace, s.service) for s in dns_slices}
    publish = {(svc.namespace, svc.name): svc.spec.publish_not_ready_addresses for _, svc in services}
    for eps in sorted(legacy, key=lambda e: (e.namespace, e.name)):
        ref = (eps.namespace, eps.name)
        if ref not in covered:
            mirrored = mirror_endpoints(eps, publish.get(ref, False))
            slices.extend(mirrored)
            if ref not in dns_covered:
                dns_slices.extend(mirrored)

    endpoint_map = endpoints_by_port(slices, config.node_name)
    # Only headless Services publish endpoints in DNS; merging the rest would cost a
    # third of the whole resolution at 10k Services for records nobody reads.
    headless = {(svc.namespace, svc.name) for _, svc in services if svc.is_headless}
    dns_map = dns_endpoints_by_service(
        (s for s in dns_slices if (s.namespace, s.service) in headless), publish
    )
    warnings: list[Diagnostic] = []
    ports: list[ServicePort] = []
    records: list[ServiceRecord] = []
    for source, svc in sorted(services, key=lambda item: (item[1].namespace, item[1].name)):
        svc_endpoints = endpoint_map.get((svc.namespace, svc.name), {})
        skipped = _skip_reason(svc, config)
        records.append(_record(svc, dns_map.get((svc.namespace, svc.name), ()), skipped))
        if skipped is None and not svc.all_cluster_ips:
            warnings.append(
                Diagnostic(
                    source,
                    "not proxied: spec.clusterIP is not allocated",
                    "Service",
                    f"{svc.namespace}/{svc.name}",
                )
            )
            continue
        if skipped is None:
            ports.extend(_service_ports(source, svc, svc_endpoints, config))
    ports.sort(key=lambda sp: (sp.key.namespace, sp.key.name, sp.key.port_name, sp.key.protocol, sp.family))
    return Resolution(Plan(config, tuple(ports), tuple(records)), warnings)


def _skip_reason(svc: Service, config: ProxyConfig) -> str | None:
    if svc.spec.type == "ExternalName":
        return "ExternalName"
    if svc.is_headless:
        return "headless"
    if not is_proxied_by(svc, config.service_proxy_name):
        return "service-proxy-name label"
    return None


def _family(ip: str) -> IPFamily:
    return IPFamily.IPv6 if ":" in ip else IPFamily.IPv4


def _canonical(ip: str) -> str:
    parsed = canonical_ip(ip)
    if parsed is None:  # validation guarantees this never happens
        raise ValueError(f"invalid IP {ip!r}")
    return parsed[1]


def _service_ports(
    source: str, svc: Service, svc_endpoints: dict[PortRef, tuple[Endpoint, ...]], config: ProxyConfig
) -> Iterable[ServicePort]:
    spec = svc.spec
    external_local = svc.externally_accessible_type and spec.external_traffic_policy == "Local"
    internal_local = spec.internal_traffic_policy == "Local"
    lb_ips = (
        [ing.ip for ing in svc.status.load_balancer.ingress if ing.ip and ing.ip_mode != "Proxy"]
        if spec.type == "LoadBalancer"
        else []
    )
    health_check = (
        (spec.health_check_node_port or 0) if (spec.type == "LoadBalancer" and external_local) else 0
    )
    scheduler = svc.metadata.annotations.get(SCHEDULER_ANNOTATION)
    for cluster_ip in svc.all_cluster_ips:
        family = _family(cluster_ip)
        external_ips = _sorted_ips(ip for ip in spec.external_ips if _family(ip) == family)
        lb_family_ips = _sorted_ips(ip for ip in lb_ips if _family(ip) == family)
        ranges = tuple(
            sorted(
                {
                    str(ipaddress.ip_network(r.strip(), strict=False))
                    for r in spec.load_balancer_source_ranges
                    if _family(r) == family
                },
                key=_net_sort,
            )
        )
        for port in spec.ports:
            protocol = Protocol(port.protocol)
            node_port = (port.node_port or 0) if svc.externally_accessible_type else 0
            externally_accessible = bool(node_port or external_ips or lb_family_ips)
            cat = categorize(
                svc_endpoints.get((port.name, protocol, family), ()),
                uses_cluster=not internal_local or externally_accessible,
                uses_local=internal_local or (external_local and externally_accessible),
                node_name=config.node_name,
                zone=config.node_zone,
            )
            yield ServicePort(
                key=ServicePortKey(svc.namespace, svc.name, port.name, protocol),
                family=family,
                cluster_ip=_canonical(cluster_ip),
                port=port.port,
                node_port=node_port,
                external_ips=external_ips,
                load_balancer_ips=lb_family_ips,
                source_ranges=ranges,
                affinity_timeout=svc.affinity_timeout,
                external_policy_local=external_local,
                internal_policy_local=internal_local,
                health_check_node_port=health_check,
                scheduler=scheduler,
                cluster_endpoints=cat.cluster,
                local_endpoints=cat.local,
                reachable_endpoints=cat.reachable,
                has_endpoints=cat.has_any,
                source=source,
            )


def _sorted_ips(ips: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({_canonical(ip) for ip in ips}, key=_ip_sort))


def _ip_sort(ip: str) -> bytes:
    return ip_sort_key(ip)


def _net_sort(net: str) -> tuple[int, int, int]:
    n = ipaddress.ip_network(net)
    return (n.version, int(n.network_address), n.prefixlen)


def _record(svc: Service, dns_endpoints: tuple[DnsEndpoint, ...], skipped: str | None) -> ServiceRecord:
    return ServiceRecord(
        namespace=svc.namespace,
        name=svc.name,
        type=svc.spec.type,
        cluster_ips=tuple(_canonical(ip) for ip in svc.all_cluster_ips),
        headless=svc.is_headless,
        external_name=svc.spec.external_name,
        ports=tuple(PortRecord(p.name, Protocol(p.protocol), p.port) for p in svc.spec.ports),
        # Only headless Services publish their endpoints in DNS; the rest publish the VIP.
        endpoints=dns_endpoints if svc.is_headless else (),
        skipped=skipped,
    )


__all__ = ["Resolution", "ServiceRef", "resolve"]
