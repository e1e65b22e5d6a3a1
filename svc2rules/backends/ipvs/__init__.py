"""ipvs backend: kube-proxy's IPVS mode (virtual servers, a dummy interface, ipsets and the
companion iptables rules), compiled to one text and applied over netlink."""

from __future__ import annotations

from typing import TYPE_CHECKING

from svc2rules.backends import Backend, RenderOptions
from svc2rules.backends.ipvs.options import IpvsOptions, ipvs_options
from svc2rules.backends.ipvs.render import FAMILIES, render_ipvs

if TYPE_CHECKING:
    from svc2rules.backends.ipvs.apply import IpvsApplier


def _applier(options: RenderOptions[IpvsOptions]) -> IpvsApplier:
    # Imported on use: compiling never needs pyroute2.
    from svc2rules.backends.ipvs.apply import IpvsApplier

    return IpvsApplier(options)


BACKEND: Backend[IpvsOptions] = Backend(
    name="ipvs",
    summary="kube-proxy IPVS mode: ipvsadm, dummy-interface addresses, ipset and iptables sections",
    families=FAMILIES,
    render=render_ipvs,
    options=ipvs_options,
    applier=_applier,
)
