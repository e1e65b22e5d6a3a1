"""The service CIDRs of the plan: the node config's (--service-cidr) and the input's ServiceCIDRs.

kube-proxy takes the CIDRs of every ServiceCIDR object it watches (pkg/proxy/config,
ServiceCIDRConfig -> Proxier.OnServiceCIDRsChanged, each family's proxier keeping its own);
kube-apiserver creates the default one, named "kubernetes", from its --service-cluster-ip-range,
which is what --service-cidr stands for when the input has no ServiceCIDR objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from svc2rules.config import ProxyConfig
from svc2rules.model.meta import KubeObject
from svc2rules.model.servicecidr import ServiceCIDR


def service_cidrs(config: ProxyConfig, objects: Iterable[KubeObject]) -> tuple[str, ...]:
    """Every service CIDR, canonical, deduplicated, IPv4 first then by address and prefix."""
    found = set(config.service_cidrs)
    for obj in objects:
        if isinstance(obj, ServiceCIDR):
            found.update(str(ipaddress.ip_network(cidr)) for cidr in obj.cidrs)
    return tuple(sorted(found, key=_order))


def _order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr)
    return network.version, int(network.network_address), network.prefixlen
