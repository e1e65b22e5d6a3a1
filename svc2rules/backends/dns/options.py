"""The dns backend's choices: its flags (`DnsFlags`, read by `dns_flags`) and what they resolve to
for a plan (`DnsOptions`: the server IP defaults to the kube-dns ClusterIP)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from svc2rules.addresses import canonical_ip
from svc2rules.backends.dns.names import check_domain
from svc2rules.errors import UsageError, quote_value
from svc2rules.family import IPFamily
from svc2rules.ir import Plan

DEFAULT_DOMAIN = "cluster.local"
FORMATS = ("zone", "hosts")
DEFAULT_FORMAT = "zone"
# Where the NS glue points when the cluster has no kube-system/kube-dns Service: the loopback
# resolver a node-local server would answer on.
FALLBACK_SERVER_IP = IPFamily.IPv4.loopback
DNS_SERVICE = ("kube-system", "kube-dns")


@dataclass(frozen=True, slots=True)
class DnsFlags:
    """--cluster-domain, --dns-format, --dns-server-ip as given (None: the default)."""

    cluster_domain: str | None = None
    dns_format: str | None = None
    dns_server_ip: str | None = None


def dns_flags(flags: Mapping[str, str]) -> DnsFlags:
    """The flags read and checked before any input is, so a bad flag is the only line said."""
    chosen = DnsFlags(flags.get("cluster_domain"), flags.get("dns_format"), flags.get("dns_server_ip"))
    _domain(chosen)
    _format(chosen)
    _server_ip(chosen)
    return chosen


@dataclass(frozen=True, slots=True)
class DnsOptions:
    domain: str
    format: str
    server_ip: str


def dns_options(plan: Plan, flags: DnsFlags) -> DnsOptions:
    return DnsOptions(_domain(flags), _format(flags), _server_ip(flags) or default_server_ip(plan))


def _domain(flags: DnsFlags) -> str:
    try:
        return check_domain(flags.cluster_domain or DEFAULT_DOMAIN)
    except ValueError as exc:
        raise UsageError(f"--cluster-domain: {exc}") from None


def _format(flags: DnsFlags) -> str:
    fmt = flags.dns_format or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise UsageError(f"--dns-format must be one of {', '.join(FORMATS)}, got {quote_value(fmt)}")
    return fmt


def _server_ip(flags: DnsFlags) -> str | None:
    server = flags.dns_server_ip
    if not server:
        return None
    parsed = canonical_ip(server.strip())
    if parsed is None:
        raise UsageError(f"--dns-server-ip: invalid IP address {quote_value(server)}")
    return parsed[1]


def default_server_ip(plan: Plan) -> str:
    """The kube-dns Service's ClusterIP (what pods have in resolv.conf), else 127.0.0.1."""
    for svc in plan.services:
        if (svc.namespace, svc.name) == DNS_SERVICE and svc.cluster_ips and not svc.headless:
            return svc.cluster_ips[0]
    return FALLBACK_SERVER_IP
