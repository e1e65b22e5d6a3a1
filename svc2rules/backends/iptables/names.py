"""Names of the iptables backend's chains, after kube-proxy's.

Per-Service chains follow kube-proxy's recipe (syntax.xtables.hash16 of the service port's
name and protocol, and of the endpoint for SEP chains) behind our own prefix, so they are
stable across runs and never collide with a kube-proxy running on the same host.
`SVC2R-SEP-` + 16 = 26 characters, inside iptables' 28-character limit.
"""

from __future__ import annotations

from svc2rules.backends import check_chain_prefix
from svc2rules.ir import Endpoint, ServicePort
from svc2rules.syntax.xtables import hash16

DEFAULT_CHAIN_PREFIX = "SVC2R"
SERVICE_CHAIN_KINDS = ("SVC", "SVL", "EXT", "FW", "SEP")


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """kube-proxy's portProtoHash: `ns/svc:port` + lower-case protocol."""
    return hash16(service_port_name + protocol)


def endpoint_hash(service_port_name: str, protocol: str, endpoint: str) -> str:
    """kube-proxy's servicePortEndpointChainName hash input: name + protocol + `ip:port`."""
    return hash16(service_port_name + protocol + endpoint)


class ChainNames:
    """Names of the iptables chains for one chain prefix."""

    def __init__(self, prefix: str = DEFAULT_CHAIN_PREFIX) -> None:
        self.prefix = check_chain_prefix(prefix)
        self.services = f"{prefix}-SERVICES"
        self.external_services = f"{prefix}-EXTERNAL-SERVICES"
        self.node_ports = f"{prefix}-NODEPORTS"
        self.postrouting = f"{prefix}-POSTROUTING"
        self.mark_masq = f"{prefix}-MARK-MASQ"
        self.forward = f"{prefix}-FORWARD"
        self.proxy_firewall = f"{prefix}-PROXY-FIREWALL"
        self.firewall = f"{prefix}-FIREWALL"
        self._fixed = frozenset(
            (
                self.services,
                self.external_services,
                self.node_ports,
                self.postrouting,
                self.mark_masq,
                self.forward,
                self.proxy_firewall,
                self.firewall,
                self.applied_marker,
            )
        )
        self._service_prefixes = tuple(f"{prefix}-{kind}-" for kind in SERVICE_CHAIN_KINDS)

    def _service_chain(self, kind: str, sp: ServicePort) -> str:
        return f"{self.prefix}-{kind}-{port_proto_hash(str(sp.key), sp.protocol.keyword)}"

    def cluster_policy(self, sp: ServicePort) -> str:
        return self._service_chain("SVC", sp)

    def local_policy(self, sp: ServicePort) -> str:
        return self._service_chain("SVL", sp)

    def external(self, sp: ServicePort) -> str:
        return self._service_chain("EXT", sp)

    def firewall_chain(self, sp: ServicePort) -> str:
        return self._service_chain("FW", sp)

    def endpoint(self, sp: ServicePort, ep: Endpoint) -> str:
        return f"{self.prefix}-SEP-{endpoint_hash(str(sp.key), sp.protocol.keyword, ep.address)}"

    @property
    def applied_marker(self) -> str:
        """An empty chain per table whose presence tells apply which generation is loaded."""
        return f"{self.prefix}-APPLIED"

    def owns(self, chain: str) -> bool:
        """Chains the iptables backend creates and may delete.

        Not every `SVC2R-*` chain: the ipvs and userspace backends keep theirs under the same
        prefix (`SVC2R-IPVS-*`, `SVC2R-USERSPACE-*`), and cleaning up one backend must not
        take another's rules with it.
        """
        return chain in self._fixed or self.is_service_chain(chain)

    def is_service_chain(self, chain: str) -> bool:
        """Per-service chains (the ones that come and go with Services)."""
        return chain.startswith(self._service_prefixes)
