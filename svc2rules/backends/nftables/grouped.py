"""The default nftables layout: a fixed set of chains and maps, however many Services there are.

kube-proxy's nftables mode gives every service port a chain (plus one per endpoint and an anonymous
verdict map), and `nft -f` load time follows the number of chains and sets, not of elements. Here
every per-Service fact is a map or set *element*; the chains only express the handful of behaviours
kube-proxy has, once:

* `services` (nat prerouting/output) dispatches the first packet with one verdict-map lookup keyed
  `daddr . meta l4proto . th dport` (`service-ips`), then NodePorts keyed `meta l4proto . th dport`
  on node addresses (`service-nodeports`). Each element jumps to one *kind* chain: `cluster-ip`,
  `external`, `external-local` (eTP Local), `firewall`/`firewall-local` (loadBalancerSourceRanges),
  `nodeport`, `nodeport-local`. A kind chain marks for masquerade as kube-proxy's SVC/EXT chains do,
  then picks the endpoint pool of its frontend through a second verdict map (`*-pools`).
* Endpoint pools are grouped by size N: chain `<space>-pool-N` does one
  `dnat to <frontend> . numgen random mod N map @<space>-endpoints-N`, so N endpoints are
  picked uniformly (kube-proxy's 1/(n-i) chain). Spaces: `service` (frontend = address . proto .
  port), `nodeport` (frontend = proto . port), and their `-shortcut` twins holding the Cluster
  endpoints that pods and the node itself use for eTP Local frontends.
* Hairpin: one set of `endpoint . endpoint` pairs, checked after DNAT in nat postrouting.
* Session affinity: one dynamic map `client . frontend -> endpoint` with per-element timeouts; the
  kind chains try it before the random pick, and right after DNAT (`affinity-record`, filter at
  dstnat+1) each new connection refreshes it through one chain per distinct timeout.
* REJECT (no endpoints) / DROP (no usable local endpoints) and the LoadBalancer firewall are filter
  verdict maps and sets keyed like iptables' filter rules, hooked where kube-proxy's iptables mode
  hooks them; NodePorts and their no-endpoint verdicts match the same destinations (guard.py:
  `primary` when nodePortAddresses is unset, as kube-proxy's nftables mode).
* With service CIDRs, kube-proxy's nftables ClusterIP guard (guard.py): a set of the ClusterIPs
  and a filter chain that rejects undefined ports of a ClusterIP and drops unallocated addresses.

Differences from iptables mode, all inherent to keeping per-Service facts out of the rule path:
affinity is remembered per frontend (a client's ClusterIP and NodePort choices are independent;
iptables shares them through per-endpoint `recent` lists), and reloading the table forgets it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from svc2rules.backends.nftables.guard import ClusterIPGuard, nodeport_destination
from svc2rules.backends.nftables.objects import Collection
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Plan, ServicePort
from svc2rules.syntax.nftables import Chain, Hook, Map, Set, Spelling, Table, spelling

NODEPORT = "inet_proto . inet_service"
NODEPORT_EXPR = "meta l4proto . th dport"
# nft 1.0.6 only types `ct original proto-dst` (and so accepts it in a concatenation) once the rule
# has established which transport protocols it deals with.
PORTED = "meta l4proto { tcp, udp, sctp }"
AFFINITY_MAP_SIZE = 1048576
# The maps whose first service port to claim a key keeps it, and whose later claimants then add
# none of their pools: the only place where one service port's elements depend on another's.
CLAIM_COLLECTIONS = ("service-ips", "service-nodeports")

# Priorities, the same as the iptables tables kube-proxy's iptables mode uses, so every verdict sees
# the packet exactly as there: nat at dstnat/srcnat, filter at 0 (after DNAT: REJECT/DROP rules match
# untranslated destinations only, as iptables' filter rules do).
NAT_PREROUTING = Hook("nat", "prerouting", -100, note="dstnat: iptables' nat PREROUTING, after conntrack")
NAT_OUTPUT = Hook("nat", "output", -100, note="dstnat: iptables' nat OUTPUT, for node-originated traffic")
NAT_POSTROUTING = Hook("nat", "postrouting", 100, note="srcnat: iptables' nat POSTROUTING, masquerade")
FILTER_INPUT = Hook("filter", "input", 0, note="iptables' filter INPUT: after DNAT")
FILTER_FORWARD = Hook("filter", "forward", 0, note="iptables' filter FORWARD: after DNAT")
FILTER_OUTPUT = Hook("filter", "output", 0, note="iptables' filter OUTPUT: after nat OUTPUT (-100)")
AFFINITY_PREROUTING = Hook(
    "filter", "prerouting", -99, note="dstnat+1: sees the DNATed first packet, records the chosen endpoint"
)
AFFINITY_OUTPUT = Hook("filter", "output", -99, note="dstnat+1: same, for node-originated connections")


@dataclass
class _Space:
    """Endpoint pools reached through one kind of frontend key.

    Pool maps are split by protocol so their keys need no protocol field: a symbolic protocol in
    each of a hundred thousand elements is a measurable share of `nft -f` time.
    """

    name: str  # service | service-shortcut | nodeport | nodeport-shortcut
    key_type: str
    pool_key_expr: str  # the frontend without its protocol
    selector: Collection
    nft: Spelling
    maps: dict[tuple[str, int], Collection] = field(default_factory=dict)

    def pool(self, proto: str, n: int) -> Collection:
        if (proto, n) not in self.maps:
            self.maps[proto, n] = Collection(
                Map(
                    f"{self.name}-{proto}-endpoints-{n}",
                    typeof=f"{self.pool_key_expr} . numgen random mod {n} : {self.nft.daddr} . th dport",
                    comment=f"{self.name} {proto} frontends with {n} endpoint(s): frontend . index -> endpoint",
                )
            )
        return self.maps[proto, n]

    def chain_name(self, proto: str, n: int) -> str:
        return f"{self.name}-{proto}-pool-{n}"

    def collections(self) -> list[Collection]:
        return [self.maps[k] for k in sorted(self.maps, key=_pool_order)]

    def chains(self) -> list[Chain]:
        out = []
        for proto, n in sorted(self.maps, key=_pool_order):
            chain = Chain(self.chain_name(proto, n), f"pick one of {n} endpoint(s) uniformly")
            chain.add(
                f"meta l4proto {proto} {self.nft.dnat_to} {self.pool_key_expr} . numgen random mod {n}"
                f" map @{self.maps[proto, n].name}"
            )
            out.append(chain)
        return out


def _pool_order(key: tuple[str, int]) -> tuple[int, str]:
    return key[1], key[0]


class LayoutObserver(Protocol):
    """Watches a build (apply uses it to learn which Service contributes which element)."""

    def port(self, sp: ServicePort | None) -> None:
        """The elements that follow are this service port's (None: the fixed part's)."""

    def element(self, collection: str, key: str, value: str | None, comment: str) -> None:
        """An element was offered to a collection, whether or not its key was new. Pool maps
        are not reported: their keys extend a claimed key (CLAIM_COLLECTIONS), so they are
        new whenever the claim succeeded."""


class GroupedLayout:
    """Plan (one family's service ports) -> Table, with a number of objects independent of the
    Services."""

    def __init__(
        self,
        plan: Plan,
        ports: tuple[ServicePort, ...],
        table: Table,
        *,
        element_comments: bool,
        rule_comments: bool,
        hooks: bool,
        observer: LayoutObserver | None = None,
    ) -> None:
        config = plan.config
        family = table.family
        self.nft = nft = spelling(family)
        self.address_order = nft.sort_key
        self.observer = observer
        self.ports = ports
        self.table = table
        self.element_comments = element_comments
        self.rule_comments = rule_comments
        self.hooks = hooks
        self.cluster_cidr = config.cluster_cidr(family)
        self.masquerade_all = config.masquerade_all
        self.mark = config.masquerade_mark
        self.node_ip = config.node_ip(family)
        # kube-proxy's nftables mode reads an unset nodePortAddresses as `primary`.
        self.node_port_ips = config.node_port_ips(family, unset_means_primary=True)
        self.guard = ClusterIPGuard(plan, nft)
        self.affinity = any(sp.affinity_timeout for sp in ports)
        self.warnings: list[str] = []

        frontend = self.frontend = f"{nft.addr_type} . inet_proto . inet_service"
        self.frontend_expr = f"{nft.daddr} . meta l4proto . th dport"

        def vmap(name: str, key: str, text: str) -> Collection:
            return Collection(Map(name, type=f"{key} : verdict", comment=text))

        self.service_ips = vmap(
            "service-ips", frontend, "ClusterIP, external IP and load-balancer IP dispatch"
        )
        self.service_nodeports = vmap("service-nodeports", NODEPORT, "NodePort dispatch")
        self.no_endpoint_cluster_ips = vmap(
            "no-endpoint-cluster-ips", frontend, "ClusterIPs without usable endpoints: reject or drop"
        )
        self.no_endpoint_external_ips = vmap(
            "no-endpoint-external-ips", frontend, "external and load-balancer IPs without usable endpoints"
        )
        self.no_endpoint_nodeports = vmap(
            "no-endpoint-nodeports", NODEPORT, "NodePorts without usable endpoints: reject or drop"
        )
        address = nft.addr_type
        self.firewall_ips = Collection(
            Set("firewall-ips", type=frontend, comment="load-balancer IPs with loadBalancerSourceRanges")
        )
        self.firewall_allow = Collection(
            Set(
                "firewall-allow",
                type=f"{frontend} . {address}",
                flags=("interval",),
                comment="load-balancer IP . proto . port . allowed source range",
            )
        )
        self.hairpin = Collection(
            Set(
                "hairpin",
                type=f"{address} . {address}",
                comment="endpoint . endpoint: masquerade hairpin traffic",
            ),
            # Shared by every Service that uses the endpoint: ordered by address, not by Service.
            sort=True,
        )
        self.nodeport_ips = Collection(
            Set("nodeport-ips", type=address, comment="nodePortAddresses"), sort=True
        )
        self.affinity_map = Collection(
            Map(
                "affinity",
                type=f"{address} . {frontend} : {address} . inet_service",
                flags=("dynamic", "timeout"),
                size=AFFINITY_MAP_SIZE,
                comment="sessionAffinity ClientIP: client . frontend -> endpoint",
            )
        )
        self.affinity_services = vmap(
            "affinity-services",
            f"{frontend} . {address} . inet_service",
            "frontend . endpoint of ClientIP-affinity services -> timeout chain",
        )
        self.affinity_nodeports = vmap(
            "affinity-nodeports",
            f"{NODEPORT} . {address} . inet_service",
            "NodePort . endpoint of ClientIP-affinity services -> timeout chain",
        )
        self.affinity_timeouts: set[int] = set()
        pool_key = f"{nft.daddr} . th dport"
        self.spaces = {
            name: _Space(name, key_type, pool_key_expr, vmap(f"{name}-pools", key_type, text), nft)
            for name, key_type, pool_key_expr, text in (
                ("service", frontend, pool_key, "frontend -> its endpoint pool"),
                ("service-shortcut", frontend, pool_key, "eTP Local frontend -> Cluster endpoints"),
                ("nodeport", NODEPORT, "th dport", "NodePort -> its endpoint pool"),
                ("nodeport-shortcut", NODEPORT, "th dport", "eTP Local NodePort -> Cluster endpoints"),
            )
        }

    # -- per service port ----------------------------------------------------------------------

    def build(self) -> list[str]:
        observer = self.observer
        if observer is not None:
            for c in self._observed():
                c.on_add = observer.element
        for sp in self.ports:
            if observer is not None:
                observer.port(sp)
            self._service_port(sp)
        if observer is not None:
            observer.port(None)
        self._assemble()
        return self.warnings

    def _observed(self) -> list[Collection]:
        """Every collection but the pool maps (see LayoutObserver.element)."""
        return [
            self.service_ips,
            self.service_nodeports,
            *(s.selector for s in self.spaces.values()),
            self.hairpin,
            *self.guard.collections(),
            self.nodeport_ips,
            self.affinity_map,
            self.affinity_services,
            self.affinity_nodeports,
            *self._verdict_collections(),
        ]

    def _comment(self, sp: ServicePort) -> str:
        return str(sp.key) if self.element_comments else ""

    def _claim(self, target: Collection, key: str, value: str, sp: ServicePort) -> bool:
        if target.add(key, value, self._comment(sp)):
            return True
        self.warnings.append(f"{sp.key}: {target.name} already has {key}; the first service port keeps it")
        return False

    def _service_port(self, sp: ServicePort) -> None:
        proto = sp.protocol.keyword
        no_endpoints = "drop" if sp.has_endpoints else "goto reject-chain"
        comment = self._comment(sp)

        # One element per Service (its ports share the ClusterIP and the comment).
        self.guard.add(sp.cluster_ip, f"{sp.key.namespace}/{sp.key.name}" if comment else "")
        key = f"{sp.cluster_ip} . {proto} . {sp.port}"
        if sp.has_internal_endpoints:
            if self._claim(self.service_ips, key, "jump cluster-ip", sp):
                self._pool("service", key, f"{sp.cluster_ip} . {sp.port}", sp.internal_endpoints, sp)
        else:
            self.no_endpoint_cluster_ips.add(key, no_endpoints, comment)

        local = sp.external_policy_local
        external = "external-local" if local else "external"
        for ip in sp.external_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if sp.has_endpoints and self._claim(self.service_ips, key, f"jump {external}", sp):
                self._external_pools("service", key, f"{ip} . {sp.port}", sp)
            if not sp.has_external_endpoints:
                self.no_endpoint_external_ips.add(key, no_endpoints, comment)

        lb_kind = ("firewall-local" if local else "firewall") if sp.uses_firewall else external
        for ip in sp.load_balancer_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if sp.has_endpoints and self._claim(self.service_ips, key, f"jump {lb_kind}", sp):
                self._external_pools("service", key, f"{ip} . {sp.port}", sp)
                if sp.uses_firewall:
                    self._firewall(sp, key)
            if sp.uses_firewall:
                self.firewall_ips.add(key, None, comment)
            if not sp.has_external_endpoints:
                self.no_endpoint_external_ips.add(key, no_endpoints, comment)

        if sp.node_port:
            np_key = f"{proto} . {sp.node_port}"
            kind = "nodeport-local" if local else "nodeport"
            if sp.has_endpoints and self._claim(self.service_nodeports, np_key, f"jump {kind}", sp):
                self._external_pools("nodeport", np_key, str(sp.node_port), sp)
            if not sp.has_external_endpoints:
                self.no_endpoint_nodeports.add(np_key, no_endpoints, comment)

        sort_key = self.address_order
        for ep in sp.reachable_endpoints:
            self.hairpin.add(f"{ep.ip} . {ep.ip}", sort_key=sort_key(ep.ip))

    def _external_pools(self, space: str, key: str, pool_key: str, sp: ServicePort) -> None:
        if sp.has_external_endpoints:
            self._pool(space, key, pool_key, sp.external_endpoints, sp)
        if sp.external_policy_local:
            # Pods and the node itself are short-circuited to the Cluster endpoints (kube-proxy's
            # EXT chain: `-s podCIDR -j SVC`, `--src-type LOCAL -j SVC`).
            self._pool(f"{space}-shortcut", key, pool_key, sp.cluster_endpoints, sp)

    def _pool(
        self,
        space_name: str,
        key: str,
        pool_key: str,
        endpoints: tuple[Endpoint, ...],
        sp: ServicePort,
    ) -> None:
        """`pool_key` is the frontend without its protocol: pool maps are per protocol."""
        n = len(endpoints)
        if n == 0:
            return
        space = self.spaces[space_name]
        proto = sp.protocol.keyword
        comment = self._comment(sp)
        space.selector.add(key, f"goto {space.chain_name(proto, n)}", comment)
        pool = space.pool(proto, n)
        # Keys are new: `key` was claimed once in its dispatch map, and each space has its own maps.
        pool.extend_unique(
            [(f"{pool_key} . {i}", f"{ep.ip} . {ep.port}", comment) for i, ep in enumerate(endpoints)]
        )
        if sp.affinity_timeout:
            timeout = sp.affinity_timeout
            self.affinity_timeouts.add(timeout)
            record = self.affinity_nodeports if space_name.startswith("nodeport") else self.affinity_services
            for ep in endpoints:
                record.add(f"{key} . {ep.ip} . {ep.port}", f"goto affinity-record-{timeout}", comment)

    def _allowed_sources(self, sp: ServicePort) -> list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network]:
        """The source ranges of the table's family, merged as iptables' rule list would match them
        (interval elements of one key must not overlap)."""
        ranges = [ipaddress.ip_network(r, strict=False) for r in sp.source_ranges]
        if self.node_ip is not None and any(ipaddress.ip_address(self.node_ip) in r for r in ranges):
            # A VIP-like load balancer routes node-to-VIP traffic back with the VIP as source.
            ranges += [ipaddress.ip_network(ip) for ip in sp.load_balancer_ips]
        if self.nft.family is IPFamily.IPv6:
            return list(
                ipaddress.collapse_addresses(r for r in ranges if isinstance(r, ipaddress.IPv6Network))
            )
        return list(ipaddress.collapse_addresses(r for r in ranges if isinstance(r, ipaddress.IPv4Network)))

    def _firewall(self, sp: ServicePort, key: str) -> None:
        for net in self._allowed_sources(sp):
            text = self.nft.interval(str(net.network_address), net.prefixlen)
            self.firewall_allow.add(f"{key} . {text}", None, self._comment(sp))

    # -- fixed part ------------------------------------------------------------------------------

    def _rule_comment(self, text: str) -> str:
        return text if self.rule_comments else ""

    def _hooked(self, name: str, hook: Hook, comment: str) -> Chain:
        return Chain(name, comment, hook if self.hooks else None)

    def _assemble(self) -> None:
        t = self.table
        if self.node_port_ips:
            for ip in self.node_port_ips:
                if not ipaddress.ip_address(ip).is_loopback:
                    self.nodeport_ips.add(ip, sort_key=self.address_order(ip))
        for c in self._collections():
            t.collection(c.finish())
        self._dispatch_chains()
        self._layout_chains()
        self._filter_chains()

    def _collections(self) -> list[Collection]:
        out = [self.service_ips, self.service_nodeports, *(s.selector for s in self.spaces.values())]
        for space in self.spaces.values():
            out += space.collections()
        out.append(self.hairpin)
        out += self.guard.collections()
        if self.node_port_ips:
            out.append(self.nodeport_ips)
        if self.affinity:
            out += [self.affinity_map, self.affinity_services, self.affinity_nodeports]
        return [*out, *self._verdict_collections()]

    def _verdict_collections(self) -> list[Collection]:
        return [
            self.no_endpoint_cluster_ips,
            self.no_endpoint_external_ips,
            self.no_endpoint_nodeports,
            self.firewall_ips,
            self.firewall_allow,
        ]

    def _postrouting_rules(self, chain: Chain) -> None:
        chain.add(
            f"ct status dnat {self.nft.saddr} . {self.nft.daddr} @hairpin jump mark-for-masquerade",
            self._rule_comment("hairpin: an endpoint reaching itself through a service"),
        )

    def _dispatch_chains(self) -> None:
        t = self.table
        rc = self._rule_comment
        chain = t.chain(
            self._hooked("nat-prerouting", NAT_PREROUTING, "service dispatch for arriving traffic")
        )
        chain.add("jump services")
        chain = t.chain(
            self._hooked("nat-output", NAT_OUTPUT, "service dispatch for node-originated traffic")
        )
        chain.add("jump services")
        chain = t.chain(self._hooked("nat-postrouting", NAT_POSTROUTING, "masquerade marked traffic"))
        self._postrouting_rules(chain)
        chain.add("jump masquerading")

        services = t.chain(Chain("services", "first packet of a connection: one lookup per kind of frontend"))
        # `jump` (not goto) so that, as in iptables' KUBE-SERVICES, a frontend that does not DNAT falls
        # through to the NodePort rule.
        services.add(f"{self.frontend_expr} vmap @service-ips")
        if (nodeports := self._nodeport_destination()) is not None:
            services.add(
                f"{nodeports} {NODEPORT_EXPR} vmap @service-nodeports",
                rc("NodePorts on every local address except loopback")
                if self.node_port_ips is None
                else rc("nodePortAddresses"),
            )

        chain = t.chain(Chain("mark-for-masquerade"))
        chain.add(f"meta mark set meta mark | {self.mark}")
        chain = t.chain(Chain("masquerading"))
        chain.add(f"meta mark & {self.mark} == 0 return")
        # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
        chain.add(f"meta mark set meta mark ^ {self.mark}")
        chain.add("masquerade fully-random")

    def _layout_chains(self) -> None:
        """nat: one chain per kind of frontend, the pools, and affinity."""
        t = self.table
        rc = self._rule_comment
        nft = self.nft
        frontend_expr = self.frontend_expr
        affinity_check = f"{nft.dnat_to} {nft.saddr} . {frontend_expr} map @affinity"
        check = [affinity_check] if self.affinity else []
        chain = t.chain(Chain("cluster-ip", "ClusterIP with usable endpoints"))
        if self.masquerade_all:
            chain.add("jump mark-for-masquerade", rc("masqueradeAll"))
        elif self.cluster_cidr:
            chain.add(
                f"{nft.saddr} != {self.cluster_cidr} jump mark-for-masquerade",
                rc("masquerade traffic from outside the cluster CIDR"),
            )
        for rule in check:
            chain.add(rule)
        chain.add(f"{frontend_expr} vmap @service-pools")

        for prefix, key_expr in (("external", frontend_expr), ("nodeport", NODEPORT_EXPR)):
            pools = "service" if prefix == "external" else "nodeport"
            chain = t.chain(Chain(prefix, f"{prefix} frontend, externalTrafficPolicy Cluster"))
            chain.add("jump mark-for-masquerade")
            for rule in check:
                chain.add(rule)
            chain.add(f"{key_expr} vmap @{pools}-pools")

            chain = t.chain(Chain(f"{prefix}-local", f"{prefix} frontend, externalTrafficPolicy Local"))
            if self.cluster_cidr:
                chain.add(
                    f"{nft.saddr} {self.cluster_cidr} goto {prefix}-shortcut",
                    rc("pods use the Cluster endpoints, as if via a load balancer"),
                )
            chain.add(
                "fib saddr type local jump mark-for-masquerade", rc("masquerade node-originated traffic")
            )
            chain.add(
                f"fib saddr type local goto {prefix}-shortcut", rc("the node uses the Cluster endpoints")
            )
            for rule in check:
                chain.add(rule)
            chain.add(f"{key_expr} vmap @{pools}-pools")

            chain = t.chain(
                Chain(f"{prefix}-shortcut", "Cluster endpoints for pods and the node (eTP Local)")
            )
            for rule in check:
                chain.add(rule)
            chain.add(f"{key_expr} vmap @{pools}-shortcut-pools")

        for kind in ("firewall", "firewall-local"):
            target = "external-local" if kind.endswith("local") else "external"
            chain = t.chain(Chain(kind, "loadBalancerSourceRanges; other sources are dropped in lb-firewall"))
            chain.add(f"{frontend_expr} . {nft.saddr} @firewall-allow goto {target}")

        for space in self.spaces.values():
            for pool_chain in space.chains():
                t.chain(pool_chain)

        # affinity
        if self.affinity:
            for hook, name in (
                (AFFINITY_PREROUTING, "affinity-prerouting"),
                (AFFINITY_OUTPUT, "affinity-output"),
            ):
                chain = t.chain(self._hooked(name, hook, "remember the endpoint of new affinity connections"))
                chain.add("ct state new ct status dnat jump affinity-record")
            chain = t.chain(Chain("affinity-record"))
            chain.add(
                f"{PORTED} {nft.ct_original_daddr} . meta l4proto . ct original proto-dst . {nft.daddr} . th dport"
                " vmap @affinity-services"
            )
            chain.add(
                f"{PORTED} meta l4proto . ct original proto-dst . {nft.daddr} . th dport vmap @affinity-nodeports"
            )
            for timeout in sorted(self.affinity_timeouts):
                chain = t.chain(Chain(f"affinity-record-{timeout}", f"timeoutSeconds {timeout}"))
                chain.add(
                    f"{PORTED} update @affinity {{ {nft.saddr} . {nft.ct_original_daddr} . meta l4proto . "
                    f"ct original proto-dst timeout {timeout}s : {nft.daddr} . th dport }}"
                )

    def _filter_chains(self) -> None:
        """filter: REJECT / DROP / firewall, hooked like kube-proxy's iptables jumps."""
        t = self.table
        chain = t.chain(self._hooked("filter-input", FILTER_INPUT, "verdicts for traffic to this node"))
        chain.add("ct state new jump lb-firewall")
        chain.add("ct state new jump external-services")
        chain = t.chain(self._hooked("filter-forward", FILTER_FORWARD, "verdicts for forwarded traffic"))
        chain.add("ct state new jump lb-firewall")
        # No `ct state invalid drop`: kube-proxy's nftables mode has none (it relies on
        # nf_conntrack_tcp_be_liberal, which apply sets), so forwarded traffic is not judged.
        chain.add("ct state new jump cluster-services")
        chain.add("ct state new jump external-services")
        self.guard.hook(chain)
        chain = t.chain(self._hooked("filter-output", FILTER_OUTPUT, "verdicts for node-originated traffic"))
        chain.add("ct state new jump lb-firewall")
        chain.add("ct state new jump cluster-services")
        self.guard.hook(chain)

        chain = t.chain(Chain("cluster-services"))
        chain.add(f"{self.frontend_expr} vmap @no-endpoint-cluster-ips")
        chain = t.chain(Chain("external-services"))
        chain.add(f"{self.frontend_expr} vmap @no-endpoint-external-ips")
        # The NodePorts the dispatch serves, and no others (loopback and addresses outside
        # nodePortAddresses are the node's own business).
        if (nodeports := self._nodeport_destination()) is not None:
            chain.add(f"{nodeports} {NODEPORT_EXPR} vmap @no-endpoint-nodeports")
        chain = t.chain(Chain("lb-firewall", "load-balancer traffic not accepted by its source ranges"))
        chain.add(f"{self.frontend_expr} @firewall-ips drop")
        chain = t.chain(Chain("reject-chain"))
        chain.add("reject")
        self.guard.chains(t, self.rule_comments)

    def _nodeport_destination(self) -> str | None:
        return nodeport_destination(self.nft, self.node_port_ips, len(self.nodeport_ips) > 0)
