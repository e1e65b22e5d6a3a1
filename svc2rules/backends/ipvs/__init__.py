"""ipvs backend: kube-proxy's IPVS mode (virtual servers, a dummy interface, ipsets and the
companion iptables rules), compiled to one text and applied over netlink."""

from svc2rules.backends import Backend
from svc2rules.backends.ipvs.render import render_ipvs


def _applier() -> object:
    # Imported on use: compiling never needs pyroute2.
    from svc2rules.backends.ipvs.apply import IpvsApplier

    return IpvsApplier()


BACKEND = Backend(
    name="ipvs",
    summary="kube-proxy IPVS mode: ipvsadm, dummy-interface addresses, ipset and iptables sections",
    render=render_ipvs,
    applier=_applier,
)
