"""Deterministic names for generated objects.

iptables chain names follow kube-proxy's recipe (base32 of sha256, first 16
characters) behind our own prefix, so they are stable across runs and never collide
with a kube-proxy running on the same host. `SVC2R-SEP-` + 16 = 26 characters,
inside iptables' 28-character limit.
"""

from __future__ import annotations

import hashlib

from svc2rules.ir import Endpoint, ServicePort

IPTABLES_CHAIN_MAX = 28
DEFAULT_CHAIN_PREFIX = "SVC2R"


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Every 10-bit group as its two base32 characters: 16 characters are 80 bits, i.e.
# exactly the first 10 bytes of the digest, so eight lookups spell the whole name.
_PAIRS = tuple(_B32[i >> 5] + _B32[i & 31] for i in range(1024))


def _hash16(text: str) -> str:
    """base32(sha256(text))[:16], as kube-proxy computes it (base64.b32encode is slow pure Python)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    return "".join(_PAIRS[(n >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0))


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """kube-proxy's portProtoHash: `ns/svc:port` + lower-case protocol."""
    return _hash16(service_port_name + protocol)


def endpoint_hash(service_port_name: str, protocol: str, endpoint: str) -> str:
    """kube-proxy's servicePortEndpointChainName hash input: name + protocol + `ip:port`."""
    return _hash16(service_port_name + protocol + endpoint)


class ChainNames:
    """Names of the iptables chains for one chain prefix."""

    def __init__(self, prefix: str = DEFAULT_CHAIN_PREFIX) -> None:
        if not prefix or len(prefix) > 8 or not prefix.replace("-", "").isalnum():
            raise ValueError(f"chain prefix must be 1-8 letters, digits or '-', got {prefix!r}")
        self.prefix = prefix
        self.services = f"{prefix}-SERVICES"
        self.external_services = f"{prefix}-EXTERNAL-SERVICES"
        self.node_ports = f"{prefix}-NODEPORTS"
        self.postrouting = f"{prefix}-POSTROUTING"
        self.mark_masq = f"{prefix}-MARK-MASQ"
        self.forward = f"{prefix}-FORWARD"
        self.proxy_firewall = f"{prefix}-PROXY-FIREWALL"
        self.firewall = f"{prefix}-FIREWALL"

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
        fixed = (
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
        return chain in fixed or self.is_service_chain(chain)

    def is_service_chain(self, chain: str) -> bool:
        """Per-service chains (the ones that come and go with Services)."""
        return any(chain.startswith(f"{self.prefix}-{k}-") for k in ("SVC", "SVL", "EXT", "FW", "SEP"))
