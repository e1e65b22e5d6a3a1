"""iptables backend: an iptables-restore payload with kube-proxy's iptables-mode semantics."""

from svc2rules.backends import Backend
from svc2rules.backends.iptables.apply import IptablesApplier
from svc2rules.backends.iptables.render import render_iptables

BACKEND = Backend(
    name="iptables",
    summary="iptables-restore script (kube-proxy iptables mode), load with iptables-restore --noflush",
    render=render_iptables,
    applier=IptablesApplier,
)
