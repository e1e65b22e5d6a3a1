"""dns backend: the Kubernetes DNS records of every Service, as a zone file or an /etc/hosts file."""

from svc2rules.backends import Backend
from svc2rules.backends.dns.options import DnsFlags, dns_flags
from svc2rules.backends.dns.render import render_dns
from svc2rules.family import FAMILIES

BACKEND: Backend[DnsFlags] = Backend(
    name="dns",
    summary="Kubernetes DNS records (A/AAAA, SRV, CNAME) as an RFC 1035 zone file or /etc/hosts lines",
    families=frozenset(FAMILIES),
    render=render_dns,
    options=dns_flags,
)
