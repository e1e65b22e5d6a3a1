"""The dns backend's choices, read from `RenderOptions.extra` (set by `compile` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from svc2rules.addresses import canonical_ip
from svc2rules.backends.dns.names import check_domain
from svc2rules.errors import UsageError, quote_value
from svc2rules.ir import Plan

DEFAULT_DOMAIN = "cluster.local"
FORMATS = ("zone", "hosts")
DEFAULT_FORMAT = "zone"
# Where the NS glue points when the cluster has no kube-system/kube-dns Service: the loopback
# resolver a node-local server would answer on.
FALLBACK_SERVER_IP = "127.0.0.1"
DNS_SERVICE = ("kube-system", "kube-dns")

# Keys of RenderOptions.extra.
CLUSTER_DOMAIN = "cluster_domain"
DNS_FORMAT = "dns_format"
DNS_SERVER_IP = "dns_server_ip"


@dataclass(frozen=True, slots=True)
class DnsOptions:
    domain: str
    format: str
    server_ip: str


def dns_options(plan: Plan, extra: dict[str, Any]) -> DnsOptions:
    try:
        domain = check_domain(str(extra.get(CLUSTER_DOMAIN) or DEFAULT_DOMAIN))
    except ValueError as exc:
        raise UsageError(f"--cluster-domain: {exc}") from None
    fmt = str(extra.get(DNS_FORMAT) or DEFAULT_FORMAT)
    if fmt not in FORMATS:
        raise UsageError(f"--dns-format must be one of {', '.join(FORMATS)}, got {quote_value(fmt)}")
    server = extra.get(DNS_SERVER_IP)
    if server:
        parsed = canonical_ip(str(server).strip())
        if parsed is None:
            raise UsageError(f"--dns-server-ip: invalid IP address {quote_value(server)}")
        server_ip = parsed[1]
    else:
        server_ip = default_server_ip(plan)
    return DnsOptions(domain, fmt, server_ip)


def default_server_ip(plan: Plan) -> str:
    """The kube-dns Service's ClusterIP (what pods have in resolv.conf), else 127.0.0.1."""
    for svc in plan.services:
        if (svc.namespace, svc.name) == DNS_SERVICE and svc.cluster_ips and not svc.headless:
            return svc.cluster_ips[0]
    return FALLBACK_SERVER_IP
