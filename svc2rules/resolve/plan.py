"""Services + endpoints -> Plan: one ServicePort per (Service, port, IP family)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svc2rules.addresses import canonical_ip, ip_sort_key
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic
from svc2rules.family import IPFamily
from svc2rules.ir import (
    DnsEndpoint,
    Endpoint,
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
from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.service import SCHEDULER_ANNOTATION, Service, is_proxied_by
from svc2rules.resolve.categorize import categorize
from svc2rules.resolve.derive import derivable, derive_normalized
from svc2rules.resolve.dns import merge_endpoints
from svc2rules.resolve.endpoints import (
    NormalizedSlice,
    PortRef,
    ServiceRef,
    endpoints_by_port,
    mirror_endpoints,
    normalize_slice,
)
from svc2rules.resolve.service_cidrs import service_cidrs


@dataclass
class Resolution:
    plan: Plan
    warnings: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceObjects:
    """Everything the resolution of one Service reads: the Service, the EndpointSlices labelled
    for it and its legacy Endpoints, or (a Service with a selector and neither) the slices the
    EndpointSlice controller would write from its Pods (resolve.derive). Nothing else in the
    input changes what it resolves to."""

    source: str
    service: Service
    slices: tuple[EndpointSlice, ...] = ()
    endpoints: Endpoints | None = None
    derived: tuple[NormalizedSlice, ...] = ()

    @property
    def ref(self) -> ServiceRef:
        return (self.service.namespace, self.service.name)


@dataclass(frozen=True, slots=True)
class ServiceResolution:
    """What one Service contributes to the plan: its service ports, its record, its warnings."""

    service_ports: tuple[ServicePort, ...]
    record: ServiceRecord
    warnings: tuple[Diagnostic, ...] = ()


def resolve(objects: Sequence[tuple[str, KubeObject]], config: ProxyConfig) -> Resolution:
    """Resolve validated objects into the model kube-proxy would compute on this node."""
    groups = group_by_service(objects)
    return merge(
        config,
        [resolve_service(groups[ref], config) for ref in sorted(groups)],
        service_cidrs(config, (obj for _, obj in objects)),
    )


def service_ref_of(obj: KubeObject) -> ServiceRef | None:
    """The Service an object belongs to (an EndpointSlice by its service-name label)."""
    if isinstance(obj, EndpointSlice):
        return (obj.namespace, obj.service_name) if obj.service_name else None
    if isinstance(obj, Service | Endpoints):
        return (obj.namespace, obj.name)
    return None


def group_by_service(objects: Iterable[tuple[str, KubeObject]]) -> dict[ServiceRef, ServiceObjects]:
    """The objects of each Service in the input; objects of absent Services change nothing.
    A Service the EndpointSlice controller manages that has neither EndpointSlices nor Endpoints
    gets the slices the controller would write from the input's Pods and Nodes."""
    services: dict[ServiceRef, tuple[str, Service]] = {}
    slices: dict[ServiceRef, list[EndpointSlice]] = {}
    legacy: dict[ServiceRef, Endpoints] = {}
    pods: list[Pod] = []
    nodes: dict[str, Node] = {}
    for source, obj in objects:
        if isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, Node):
            nodes[obj.name] = obj
        ref = service_ref_of(obj)
        if ref is None:
            continue
        if isinstance(obj, Service):
            services[ref] = (source, obj)
        elif isinstance(obj, EndpointSlice):
            slices.setdefault(ref, []).append(obj)
        elif isinstance(obj, Endpoints):
            legacy[ref] = obj
    groups = {}
    for ref, (source, svc) in services.items():
        derived: tuple[NormalizedSlice, ...] = ()
        if pods and ref not in slices and ref not in legacy and derivable(svc):
            derived = derive_normalized(svc, pods, nodes or None)
        groups[ref] = ServiceObjects(source, svc, tuple(slices.get(ref, ())), legacy.get(ref), derived)
    return groups


def merge(
    config: ProxyConfig, resolutions: Iterable[ServiceResolution], cidrs: tuple[str, ...] | None = None
) -> Resolution:
    """The plan of Services resolved one by one, given in (namespace, name) order; `cidrs`:
    the plan's service CIDRs (resolve.service_cidrs; None: the config's alone)."""
    ports: list[ServicePort] = []
    records: list[ServiceRecord] = []
    warnings: list[Diagnostic] = []
    for resolution in resolutions:
        ports.extend(resolution.service_ports)
        records.append(resolution.record)
        warnings.extend(resolution.warnings)
    if cidrs is None:
        cidrs = service_cidrs(config, ())
    return Resolution(Plan(config, tuple(ports), tuple(records), cidrs), warnings)


def resolve_service(group: ServiceObjects, config: ProxyConfig) -> ServiceResolution:
    """One Service, as kube-proxy resolves it on this node."""
    svc = group.service
    publish = svc.spec.publish_not_ready_addresses
    normalized = [n for n in (normalize_slice(sl) for sl in group.slices) if n is not None]
    normalized.extend(group.derived)
    # Slices labelled headless are read by DNS only; kube-proxy ignores them.
    slices = [n for n in normalized if not n.headless]
    dns_slices = list(normalized)
    # Legacy Endpoints only count when no EndpointSlice speaks for the Service.
    if group.endpoints is not None and not slices:
        mirrored = mirror_endpoints(group.endpoints, publish)
        slices.extend(mirrored)
        if not dns_slices:
            dns_slices.extend(mirrored)
    skipped = _skip_reason(svc, config)
    # Only headless Services publish endpoints in DNS; merging the rest would cost a
    # third of the whole resolution at 10k Services for records nobody reads.
    dns = merge_endpoints(dns_slices, publish) if svc.is_headless and dns_slices else ()
    record = _record(svc, dns, skipped)
    if skipped is not None:
        return ServiceResolution((), record)
    if not svc.all_cluster_ips:
        warning = Diagnostic(
            group.source,
            "not proxied: spec.clusterIP is not allocated",
            "Service",
            f"{svc.namespace}/{svc.name}",
        )
        return ServiceResolution((), record, (warning,))
    svc_endpoints = endpoints_by_port(slices, config.node_name).get(group.ref, {})
    ports = sorted(
        _service_ports(group.source, svc, svc_endpoints, config),
        key=lambda sp: (sp.key.port_name, sp.key.protocol, sp.family),
    )
    return ServiceResolution(tuple(ports), record)


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


__all__ = [
    "Resolution",
    "ServiceObjects",
    "ServiceRef",
    "ServiceResolution",
    "group_by_service",
    "merge",
    "resolve",
    "resolve_service",
]
