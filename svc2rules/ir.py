"""The intermediate model every backend renders from.

One `ServicePort` per (Service, port, IP family), already resolved the way
kube-proxy resolves it: endpoints categorised for the Cluster and Local policies,
frontends listed, REJECT/DROP decisions taken. Backends only express these
decisions; they never look at Kubernetes objects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"

    @property
    def keyword(self) -> str:
        """The lower-case spelling iptables, nft and ipvsadm use."""
        return self.value.lower()


class FrontendKind(StrEnum):
    CLUSTER_IP = "ClusterIP"
    EXTERNAL_IP = "ExternalIP"
    LOAD_BALANCER = "LoadBalancer"
    NODE_PORT = "NodePort"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address of one service port (kube-proxy's endpointInfo)."""

    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    is_local: bool
    node_name: str | None = None
    zone: str | None = None
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()
    hostname: str | None = None

    @property
    def address(self) -> str:
        """`ip:port` (IPv6 in brackets): the endpoint's identity within a service port."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Frontend:
    """An address a service port is reached on. NodePorts have no ip (any node address)."""

    kind: FrontendKind
    ip: str | None
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class ServicePortKey:
    namespace: str
    name: str
    port_name: str
    protocol: Protocol

    def __str__(self) -> str:
        """kube-proxy's ServicePortName.String(): used in comments and chain-name hashes."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass(frozen=True, slots=True)
class ServicePort:
    key: ServicePortKey
    family: IPFamily
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    scheduler: str | None = None
    cluster_endpoints: tuple[Endpoint, ...] = ()
    local_endpoints: tuple[Endpoint, ...] = ()
    reachable_endpoints: tuple[Endpoint, ...] = ()
    has_endpoints: bool = False
    source: str = field(default="", compare=False)

    @property
    def protocol(self) -> Protocol:
        return self.key.protocol

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.external_ips) or bool(self.load_balancer_ips)

    @property
    def has_internal_endpoints(self) -> bool:
        return self.has_endpoints and not (self.internal_policy_local and not self.local_endpoints)

    @property
    def has_external_endpoints(self) -> bool:
        return self.has_endpoints and not (self.external_policy_local and not self.local_endpoints)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)

    @property
    def uses_external_chain(self) -> bool:
        return self.has_endpoints and self.externally_accessible

    @property
    def uses_firewall(self) -> bool:
        return self.has_endpoints and bool(self.load_balancer_ips) and bool(self.source_ranges)

    @property
    def internal_endpoints(self) -> tuple[Endpoint, ...]:
        return self.local_endpoints if self.internal_policy_local else self.cluster_endpoints

    @property
    def external_endpoints(self) -> tuple[Endpoint, ...]:
        return self.local_endpoints if self.external_policy_local else self.cluster_endpoints

    @property
    def frontends(self) -> tuple[Frontend, ...]:
        proto = self.protocol
        out = [Frontend(FrontendKind.CLUSTER_IP, self.cluster_ip, self.port, proto)]
        out += [Frontend(FrontendKind.EXTERNAL_IP, ip, self.port, proto) for ip in self.external_ips]
        out += [Frontend(FrontendKind.LOAD_BALANCER, ip, self.port, proto) for ip in self.load_balancer_ips]
        if self.node_port:
            out.append(Frontend(FrontendKind.NODE_PORT, None, self.node_port, proto))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class PortRecord:
    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True, slots=True)
class DnsEndpoint:
    """An address a headless Service publishes: one per IP, merged over its slices."""

    ip: str
    hostname: str | None
    ready: bool
    # The endpoint's own port numbers by name: headless SRV records advertise these, not the
    # Service's port (there is no VIP to translate one into the other).
    ports: tuple[PortRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """Every valid Service, proxied or not: what DNS and `explain` need to know."""

    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str | None
    ports: tuple[PortRecord, ...]
    endpoints: tuple[DnsEndpoint, ...]
    skipped: str | None  # why the proxy does not handle it (headless, ExternalName, proxy-name label)


@dataclass(frozen=True, slots=True)
class Plan:
    """The resolved cluster, for one node."""

    config: ProxyConfig
    service_ports: tuple[ServicePort, ...]
    services: tuple[ServiceRecord, ...]
    # The service CIDRs (--service-cidr and the input's ServiceCIDR objects): sorted (IPv4
    # first, by address), deduplicated, canonical. Empty: no ClusterIP guard.
    service_cidrs: tuple[str, ...] = ()

    def for_family(self, family: IPFamily) -> tuple[ServicePort, ...]:
        return tuple(sp for sp in self.service_ports if sp.family == family)

    def service_cidrs_of(self, family: IPFamily) -> tuple[str, ...]:
        return tuple(c for c in self.service_cidrs if IPFamily.of(c) == family)

    def to_json(self) -> str:
        """Canonical JSON of the whole model (sorted keys, stable order)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "serviceCIDRs": list(self.service_cidrs),
            "notes": [] if self.service_cidrs else [NO_SERVICE_CIDR_NOTE],
            "servicePorts": [_service_port_dict(sp) for sp in self.service_ports],
            "services": [asdict(s) for s in self.services],
        }


NO_SERVICE_CIDR_NOTE = (
    "no service CIDR (--service-cidr, or a networking.k8s.io/v1 ServiceCIDR in the input): "
    "no ClusterIP guard (undefined ports of a ClusterIP and unallocated service IPs are not refused)"
)


def _service_port_dict(sp: ServicePort) -> dict[str, Any]:
    data = asdict(sp)
    data["key"] = str(sp.key)
    data["protocol"] = sp.protocol.value
    data.pop("source")
    data["decisions"] = {
        "hasEndpoints": sp.has_endpoints,
        "hasInternalEndpoints": sp.has_internal_endpoints,
        "hasExternalEndpoints": sp.has_external_endpoints,
        "usesExternalChain": sp.uses_external_chain,
        "usesFirewall": sp.uses_firewall,
    }
    return data
