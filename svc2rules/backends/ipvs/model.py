"""What the IPVS backend puts on a host, as syntax objects: the compiler builds it, the
renderer has each target's writer spell it, `apply` diffs it against the kernel.

Virtual servers, ipsets and the companion tables are the syntax layer's objects
(svc2rules.syntax.ipvsadm / ipset / xtables); what they are for (the Service port and the
kind of frontend behind each virtual server) is kept beside them, for messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from svc2rules.family import IPFamily
from svc2rules.syntax import xtables
from svc2rules.syntax.ipset import IpSet
from svc2rules.syntax.ipvsadm import VirtualServer

Key = tuple[str, str, int]  # (protocol, address, port): a virtual server's identity


@dataclass(frozen=True, slots=True)
class Owner:
    """What a virtual server serves: `ns/svc:port` and ClusterIP, ExternalIP, LoadBalancer or
    NodePort."""

    service: str
    kind: str


@dataclass(frozen=True, slots=True)
class IpvsRuleset:
    """Everything of kube-proxy's IPVS mode for one node and family, in plan order."""

    family: IPFamily
    dummy_interface: str
    virtual_servers: tuple[VirtualServer, ...]
    bind_addresses: tuple[str, ...]  # host addresses on the dummy interface
    ipsets: tuple[IpSet, ...]
    # The companion nat and filter tables (their jumps only when jumps are wanted).
    tables: tuple[xtables.Table, ...]
    owners: dict[Key, Owner] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def owner(self, vs: VirtualServer) -> Owner:
        return self.owners.get(vs.key, Owner("", ""))
