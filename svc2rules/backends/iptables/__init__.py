"""iptables backend: an iptables-restore payload with kube-proxy's iptables-mode semantics."""

from svc2rules.backends import Backend, DataplaneFacts
from svc2rules.backends.iptables.apply import IptablesApplier
from svc2rules.backends.iptables.render import render_iptables
from svc2rules.family import IPFamily

BACKEND: Backend[None] = Backend(
    name="iptables",
    summary="iptables-restore script (kube-proxy iptables mode), load with iptables-restore --noflush",
    families=frozenset({IPFamily.IPv4}),
    render=render_iptables,
    applier=IptablesApplier,
    facts=DataplaneFacts(
        kube_proxy_semantics=True,
        localhost_nodeports=True,
        affinity_scope="per endpoint (shared by every frontend of the service port)",
    ),
)
