"""dns backend: the Kubernetes DNS records of every Service, as a zone file or an /etc/hosts file."""

from svc2rules.backends import Backend
from svc2rules.backends.dns.render import render_dns

BACKEND = Backend(
    name="dns",
    summary="Kubernetes DNS records (A/AAAA, SRV, CNAME) as an RFC 1035 zone file or /etc/hosts lines",
    render=render_dns,
)
