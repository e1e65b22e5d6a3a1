"""The proxy's listeners for a plan: one per (service port, endpoint list it serves).

A service port has up to two endpoint lists, exactly the ones kube-proxy's iptables mode
builds chains for: the Cluster list (every usable endpoint) and the Local list (this node's).
Which frontend and which client uses which list is decided in the rules (the backend); the
proxy only needs one port per list, because a REDIRECTed UDP datagram does not carry its
original destination. Which lists exist depends only on the Service's spec (the traffic
policies and whether it is reachable from outside), never on its endpoints, so endpoints
coming and going never move a port.

Both the `userspace` backend's rules and `svc2rules proxy` (which imports it from here) are
built from the same plan and range, which is what makes the rules and the listening proxy agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from svc2rules.backends.userspace.ports import PortRange, assign_ports
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Plan, Protocol, ServicePort

# kube-proxy's userspace proxier relayed TCP and UDP only; ours serves these families.
SUPPORTED_PROTOCOLS = (Protocol.TCP, Protocol.UDP)
FAMILIES = frozenset({IPFamily.IPv4})


class Pool(StrEnum):
    """The endpoint list a listener serves."""

    CLUSTER = "cluster"
    LOCAL = "local"


def identity(sp: ServicePort, pool: Pool) -> str:
    """What a listener's port is derived from: kube-proxy's portProtoHash input (+ the list)."""
    base = f"{sp.key}{sp.protocol.keyword}"
    return base if pool is Pool.CLUSTER else f"{base}/local"


def pools_of(sp: ServicePort) -> tuple[Pool, ...]:
    pools = []
    if sp.uses_cluster_endpoints:
        pools.append(Pool.CLUSTER)
    if sp.uses_local_endpoints:
        pools.append(Pool.LOCAL)
    return tuple(pools)


@dataclass(frozen=True, slots=True)
class Listener:
    service_port: ServicePort
    pool: Pool
    port: int

    @property
    def protocol(self) -> Protocol:
        return self.service_port.protocol

    @property
    def name(self) -> str:
        return str(self.service_port.key)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        sp = self.service_port
        return sp.cluster_endpoints if self.pool is Pool.CLUSTER else sp.local_endpoints

    @property
    def affinity_group(self) -> str:
        """Listeners of one service port share ClientIP affinity, as kube-proxy's per-endpoint
        `recent` lists are shared by every frontend of the service port."""
        return f"{self.service_port.key}{self.protocol.keyword}"


@dataclass(frozen=True, slots=True)
class Layout:
    port_range: PortRange
    listeners: tuple[Listener, ...]
    skipped: tuple[ServicePort, ...]  # service ports the proxy cannot serve (IPv6, SCTP)
    ports: dict[str, int] = field(compare=False)  # by identity()

    def port(self, sp: ServicePort, pool: Pool) -> int:
        return self.ports[identity(sp, pool)]

    def __iter__(self) -> Iterator[Listener]:
        return iter(self.listeners)


def proxied(sp: ServicePort) -> bool:
    return sp.family in FAMILIES and sp.protocol in SUPPORTED_PROTOCOLS


def build_layout(plan: Plan, port_range: PortRange) -> Layout:
    ports = [sp for sp in plan.service_ports if proxied(sp)]
    skipped = tuple(sp for sp in plan.service_ports if not proxied(sp))
    wanted = [(sp, pool) for sp in ports for pool in pools_of(sp)]
    assigned = assign_ports((identity(sp, pool) for sp, pool in wanted), port_range)
    listeners = tuple(Listener(sp, pool, assigned[identity(sp, pool)]) for sp, pool in wanted)
    return Layout(port_range, listeners, skipped, assigned)
