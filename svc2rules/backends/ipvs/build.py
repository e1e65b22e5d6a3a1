"""Plan -> IpvsRuleset, following kube-proxy's IPVS proxier (pkg/proxy/ipvs/proxier.go,
syncProxyRules and syncEndpoint).

Per service port:

* one virtual server on the ClusterIP, each externalIP and each LoadBalancer IP (bound to
  our dummy interface unless the address is a node IP), and one per node IP on the NodePort
  (never bound); every one with the same scheduler, `-p TIMEOUT` for ClientIP affinity and,
  for `mh`, the flag kube-proxy sets (IP_VS_SVC_F_SCHED2, `-b mh-port`);
* real servers with weight 1, masqueraded: the ClusterIP gets the Local-policy endpoints
  when internalTrafficPolicy is Local, the others when externalTrafficPolicy is Local --
  and, unlike iptables mode, the Cluster-policy endpoints when there is no local one
  (kube-proxy PR 97081: no DROP in IPVS mode; a Service without endpoints has a virtual
  server without real servers, which the kernel answers with ICMP port unreachable);
* ipset entries the static companion iptables rules match on (see `companion.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from svc2rules.backends import RenderOptions
from svc2rules.backends.ipvs.companion import build_companion
from svc2rules.backends.ipvs.model import IpvsRuleset, Key, Owner
from svc2rules.backends.ipvs.names import DUMMY_INTERFACE, IpvsNames
from svc2rules.backends.ipvs.options import IpvsOptions, check_scheduler
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, FrontendKind, Plan, ServicePort
from svc2rules.syntax.ipset import Entry, IpSet, SetOptions, ip_port, ip_port_ip, ip_port_net
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer

DEFAULT_SCHEDULER = "rr"
# kube-proxy sets FlagSourceHash (0x10 = IP_VS_SVC_F_SCHED2) on every `mh` virtual server.
SCHED_FLAGS = {"mh": ("mh-port",)}
# kube-proxy's set sizes (pkg/proxy/ipvs/ipset.go); every entry may name its Service.
_HASH_SIZE, _MAX_ELEMENTS = 1024, 65536
_BITMAP_OPTIONS = SetOptions(range="0-65535", comment=True)


def hash_options(family: IPFamily) -> SetOptions:
    return SetOptions(family=family, hashsize=_HASH_SIZE, maxelem=_MAX_ELEMENTS, comment=True)


def default_scheduler(plan: Plan, options: RenderOptions[IpvsOptions]) -> str:
    """--ipvs-scheduler, else the config file's ipvs.scheduler, else rr."""
    chosen = options.backend.scheduler if options.backend is not None else None
    if chosen:
        return chosen
    return check_scheduler(plan.config.ipvs_scheduler or DEFAULT_SCHEDULER, "ipvs.scheduler")


def node_port_addresses(plan: Plan, family: IPFamily) -> tuple[str, ...]:
    """The node IPs of `family` that get NodePort virtual servers: nodePortAddresses' matches,
    else every --node-ip; never loopback (kube-proxy's IPVS mode has no localhost NodePorts)."""
    chosen = plan.config.node_port_ips(family)
    if chosen is None:
        chosen = tuple(ip for ip in plan.config.node_ips if IPFamily.of(ip) is family)
    out = {ip for ip in chosen if not ipaddress.ip_address(ip).is_loopback}
    return tuple(sorted(out, key=ipaddress.ip_address))


class _Sets:
    """Entries per set in first-seen order, each with the Service it comes from."""

    def __init__(self, names: IpvsNames, family: IPFamily, comments: bool) -> None:
        self.names = names
        self.hash_options = hash_options(family)
        self.comments = comments
        self.entries: dict[str, dict[str, str]] = {}

    def add(self, name: str, entry: str, service: str) -> None:
        self.entries.setdefault(name, {}).setdefault(entry, service)

    def build(self) -> tuple[IpSet, ...]:
        n = self.names
        hash_sets = [
            (n.loop_back, "hash:ip,port,ip", "endpoints dst ip:port, source ip for solving hairpin purpose"),
            (n.cluster_ip, "hash:ip,port", "service cluster ip and port for masquerade purpose"),
            (n.external_ip, "hash:ip,port", "service external ip and port for masquerade and filter purpose"),
            (
                n.external_ip_local,
                "hash:ip,port",
                "service external ip and port with externalTrafficPolicy=local",
            ),
            (
                n.load_balancer_set,
                "hash:ip,port",
                "service load balancer ip and port for load balancer with sourceRange",
            ),
            (
                n.load_balancer_fw,
                "hash:ip,port",
                "load balancer ip and port for load balancer with sourceRange",
            ),
            (
                n.load_balancer_local,
                "hash:ip,port",
                "load balancer ip and port with externalTrafficPolicy=local",
            ),
            (
                n.lb_source_ip,
                "hash:ip,port,ip",
                "load balancer ip, port and source ip for packet filter purpose",
            ),
            (
                n.lb_source_cidr,
                "hash:ip,port,net",
                "load balancer ip, port and source cidr for packet filter purpose",
            ),
        ]
        out = [self._set(name, kind, self.hash_options, text) for name, kind, text in hash_sets]
        for proto in ("tcp", "udp"):
            for local in (True, False):
                policy = "with externalTrafficPolicy=local" if local else "for masquerade purpose"
                out.append(
                    self._set(
                        n.node_port_set(proto, local=local),
                        "bitmap:port",
                        _BITMAP_OPTIONS,
                        f"nodeport {proto.upper()} port {policy}",
                    )
                )
        for local in (True, False):
            policy = "with externalTrafficPolicy=local" if local else "for masquerade purpose"
            out.append(
                self._set(
                    n.node_port_set("sctp", local=local),
                    "hash:ip,port",
                    self.hash_options,
                    f"nodeport SCTP node ip and port {policy}",
                )
            )
        out.append(self._set(n.health_check, "bitmap:port", _BITMAP_OPTIONS, "health check node port"))
        out.append(
            self._set(n.bound_ips, "hash:ip", self.hash_options, f"addresses bound to {DUMMY_INTERFACE}")
        )
        return tuple(out)

    def _set(self, name: str, kind: str, options: SetOptions, text: str) -> IpSet:
        entries = tuple(
            Entry(element, service if self.comments and service else None)
            for element, service in self.entries.get(name, {}).items()
        )
        return IpSet(name, kind, options, entries, description=f"Kubernetes {text}")


def _real_servers(endpoints: Iterable[Endpoint]) -> tuple[RealServer, ...]:
    return tuple(sorted({RealServer(ep.ip, ep.port) for ep in endpoints}))


def internal_endpoints(sp: ServicePort) -> tuple[Endpoint, ...]:
    """syncEndpoint(onlyNodeLocalEndpoints=iTP Local) for the ClusterIP."""
    return sp.local_endpoints if sp.internal_policy_local and sp.local_endpoints else sp.cluster_endpoints


def external_endpoints(sp: ServicePort) -> tuple[Endpoint, ...]:
    """syncEndpoint(onlyNodeLocalEndpoints=eTP Local) for externalIPs, LB IPs and NodePorts."""
    return sp.local_endpoints if sp.external_policy_local and sp.local_endpoints else sp.cluster_endpoints


class _Builder:
    def __init__(
        self, plan: Plan, options: RenderOptions[IpvsOptions], family: IPFamily, ports: Sequence[ServicePort]
    ) -> None:
        self.plan = plan
        self.ports = ports
        self.names = IpvsNames.for_prefix(options.chain_prefix)
        self.default = default_scheduler(plan, options)
        self.node_ips = node_port_addresses(plan, family)
        self.primary = plan.config.node_ip(family)
        self.sets = _Sets(self.names, family, options.comments.on)
        self.servers: dict[Key, VirtualServer] = {}
        self.owners: dict[Key, Owner] = {}
        self.bind: dict[str, str] = {}  # address -> the Service that bound it first
        self.blocked_from_node: list[tuple[str, str, int, str]] = []  # (lb ip, proto, port, service)
        self.warnings: list[str] = []

    def _virtual(
        self, sp: ServicePort, kind: FrontendKind, ip: str, port: int, rs: tuple[RealServer, ...]
    ) -> None:
        scheduler = sp.scheduler or self.default
        vs = VirtualServer(
            sp.protocol.keyword,
            ip,
            port,
            scheduler,
            sp.affinity_timeout or 0,
            SCHED_FLAGS.get(scheduler, ()),
            rs,
        )
        other = self.owners.get(vs.key)
        if other is not None:
            self.warnings.append(
                f"{kind.value} {ip}:{port}/{vs.protocol} of {sp.key} is also a virtual server of "
                f"{other.service} ({other.kind}); keeping the first"
            )
            return
        self.servers[vs.key] = vs
        self.owners[vs.key] = Owner(str(sp.key), kind.value)

    def build(self) -> None:
        if not self.node_ips and any(sp.node_port for sp in self.ports):
            self.warnings.append(
                "NodePort virtual servers need a node IP (--node-ip or nodePortAddresses): none made"
            )
        for sp in self.ports:
            self._service_port(sp)

    def _service_port(self, sp: ServicePort) -> None:
        n, sets = self.names, self.sets
        name = str(sp.key)
        proto = sp.protocol.keyword
        internal = _real_servers(internal_endpoints(sp))
        external = _real_servers(external_endpoints(sp))
        local = {(ep.ip, ep.port) for ep in sp.reachable_endpoints if ep.is_local}
        for rs in sorted({*internal, *external}):
            if (rs.address, rs.port) in local:
                # Hairpin: a pod reaching itself through the VIP must see a source it can answer.
                sets.add(n.loop_back, ip_port_ip(rs.address, proto, rs.port, rs.address), name)

        sets.add(n.cluster_ip, ip_port(sp.cluster_ip, proto, sp.port), name)
        self._virtual(sp, FrontendKind.CLUSTER_IP, sp.cluster_ip, sp.port, internal)
        self.bind.setdefault(sp.cluster_ip, name)

        for ip in sp.external_ips:
            target = n.external_ip_local if sp.external_policy_local else n.external_ip
            sets.add(target, ip_port(ip, proto, sp.port), name)
            self._virtual(sp, FrontendKind.EXTERNAL_IP, ip, sp.port, external)
            self._bind_unless_node_ip(ip, name)

        for ip in sp.load_balancer_ips:
            entry = ip_port(ip, proto, sp.port)
            sets.add(n.load_balancer_set, entry, name)
            if sp.external_policy_local:
                sets.add(n.load_balancer_local, entry, name)
            if sp.source_ranges:
                sets.add(n.load_balancer_fw, entry, name)
                allow_from_node = False
                for cidr in sp.source_ranges:
                    sets.add(n.lb_source_cidr, ip_port_net(ip, proto, sp.port, cidr), name)
                    net = ipaddress.ip_network(cidr, strict=False)
                    if self.primary is not None and ipaddress.ip_address(self.primary) in net:
                        allow_from_node = True
                if allow_from_node:
                    # A VIP-like load balancer routes node-to-VIP traffic back with the VIP as source.
                    sets.add(n.lb_source_ip, ip_port_ip(ip, proto, sp.port, ip), name)
                else:
                    self.blocked_from_node.append((ip, proto, sp.port, name))
            self._virtual(sp, FrontendKind.LOAD_BALANCER, ip, sp.port, external)
            self._bind_unless_node_ip(ip, name)

        if sp.node_port and self.node_ips:
            if sp.protocol.keyword == "sctp":
                entries = [ip_port(ip, proto, sp.node_port) for ip in self.node_ips]
            else:
                entries = [str(sp.node_port)]
            for entry in entries:
                sets.add(n.node_port_set(proto, local=False), entry, name)
                if sp.external_policy_local:
                    sets.add(n.node_port_set(proto, local=True), entry, name)
            for ip in self.node_ips:
                self._virtual(sp, FrontendKind.NODE_PORT, ip, sp.node_port, external)
        if sp.health_check_node_port:
            sets.add(n.health_check, str(sp.health_check_node_port), name)

    def _bind_unless_node_ip(self, ip: str, service: str) -> None:
        # kube-proxy binds an external address only if no other interface has it already.
        if ip not in self.plan.config.node_ips:
            self.bind.setdefault(ip, service)


def build_ruleset(plan: Plan, options: RenderOptions[IpvsOptions], family: IPFamily) -> IpvsRuleset:
    """The ruleset of one family (the service ports of other families are left out)."""
    ports = plan.for_family(family)
    builder = _Builder(plan, options, family, ports)
    builder.build()
    names = builder.names
    for ip, service in builder.bind.items():
        builder.sets.add(names.bound_ips, ip, service)
    tables = build_companion(
        plan.config, names, family, builder.blocked_from_node, options.comments.on, options.jumps
    )
    return IpvsRuleset(
        family=family,
        dummy_interface=DUMMY_INTERFACE,
        virtual_servers=tuple(builder.servers.values()),
        bind_addresses=tuple(builder.bind),
        ipsets=builder.sets.build(),
        tables=tables,
        owners=builder.owners,
        warnings=tuple(builder.warnings),
    )
