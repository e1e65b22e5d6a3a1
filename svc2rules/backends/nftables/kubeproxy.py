"""The kube-proxy layout (`--nft-layout kube-proxy`): what kube-proxy's nftables proxier programs.

Object for object the table kube-proxy's nftables mode writes (kubernetes/kubernetes
pkg/proxy/nftables/proxier.go: setupNFTables, syncProxyRules, writeServiceToEndpointRules), as
its unit tests assert it (proxier_test.go at 81810de635aa13aa0a32992f6def3aa9d6025ebc:
TestOverallNFTablesRules, TestSyncProxyRulesRepeated, TestSyncProxyRulesStartup, TestBadIPs;
golden/kube-proxy-nft-* transcribe them):

* fixed part: the `cluster-ips` and `nodeport-ips` sets; the `service-ips`,
  `service-nodeports`, `no-endpoint-services`, `no-endpoint-nodeports` and `firewall-ips`
  verdict maps; base chains `filter-prerouting-pre-dnat` / `filter-output-pre-dnat` (priority
  dstnat - 10: loadBalancerSourceRanges see the original destination), `filter-input` /
  `filter-forward` / `filter-output` (priority filter: no-endpoint verdicts and the ClusterIP
  guard, after DNAT), `nat-prerouting` / `nat-output` / `nat-postrouting`; helper chains
  `services`, `firewall-check`, `service-endpoints-check`, `nodeport-endpoints-check`,
  `cluster-ips-check`, `reject-chain`, `mark-for-masquerade`, `masquerading`.
* per service port: `service-` (Cluster endpoints), `local-` (Local endpoints), `external-`,
  `firewall-` chains named `<prefix><hashAndTruncate(ns/svc/proto/port)>`; one `endpoint-`
  chain and, with ClientIP affinity, one `affinity-` set per endpoint; map elements that `goto`
  them. An endpoint is picked by `numgen random mod N vmap { i : goto endpoint-... }`.

Names, rule texts and comments are kube-proxy's words. What differs on purpose is listed in
README.md (nftables layouts). Loading time follows the number of chains (minutes at 10k
Services), which is why this is not the default layout.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Callable, Iterable

from svc2rules.backends.nftables.objects import Collection
from svc2rules.ir import Endpoint, Plan, ServicePort
from svc2rules.syntax.nftables import Chain, Hook, Map, Set, Table, spelling

# kube-proxy truncates object names here: knftables.NameLengthMax (256) minus the longest
# chain-name prefix (16).
NAME_MAX = 240
TABLE_COMMENT = "rules for kube-proxy"

# Base chains (proxier.go nftablesBaseChains): filtering on the original destination runs
# before DNAT (dstnat - 10); the no-endpoint verdicts and the ClusterIP guard run at filter
# priority, after DNAT, so only what no service chain translated reaches them.
FILTER_PREROUTING_PRE_DNAT = Hook("filter", "prerouting", -110, note="dstnat - 10: before DNAT")
FILTER_OUTPUT_PRE_DNAT = Hook("filter", "output", -110, note="dstnat - 10: before DNAT")
FILTER_FORWARD = Hook("filter", "forward", 0, note="filter: after DNAT")
FILTER_INPUT = Hook("filter", "input", 0, note="filter: after DNAT")
FILTER_OUTPUT = Hook("filter", "output", 0, note="filter: after nat output (dstnat)")
NAT_PREROUTING = Hook("nat", "prerouting", -100, note="dstnat")
NAT_OUTPUT = Hook("nat", "output", -100, note="dstnat")
NAT_POSTROUTING = Hook("nat", "postrouting", 100, note="srcnat")

BASE_CHAINS: tuple[tuple[str, Hook, tuple[str, ...]], ...] = (
    # (base chain, hook, chains it jumps to for new connections, in kube-proxy's order)
    ("filter-prerouting-pre-dnat", FILTER_PREROUTING_PRE_DNAT, ("firewall-check",)),
    ("filter-output-pre-dnat", FILTER_OUTPUT_PRE_DNAT, ("firewall-check",)),
    ("filter-forward", FILTER_FORWARD, ("service-endpoints-check", "cluster-ips-check")),
    ("filter-input", FILTER_INPUT, ("nodeport-endpoints-check", "service-endpoints-check")),
    ("filter-output", FILTER_OUTPUT, ("service-endpoints-check", "cluster-ips-check")),
)
NAT_CHAINS: tuple[tuple[str, Hook, str], ...] = (
    ("nat-prerouting", NAT_PREROUTING, "services"),
    ("nat-output", NAT_OUTPUT, "services"),
    ("nat-postrouting", NAT_POSTROUTING, "masquerading"),
)
NODEPORT_EXPR = "meta l4proto . th dport"
REJECT = "goto reject-chain"


def hash_and_truncate(text: str) -> str:
    """kube-proxy's hashAndTruncate: 8 base32 characters of sha256, '-', the text."""
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]
    name = f"{digest}-{text}"
    return name if len(name) <= NAME_MAX else name[: NAME_MAX - 3] + "..."


def service_port_base(sp: ServicePort) -> str:
    """servicePortChainNameBase: HASH-namespace/name/protocol/portName."""
    return hash_and_truncate(f"{sp.key.namespace}/{sp.key.name}/{sp.protocol.keyword}/{sp.key.port_name}")


def endpoint_base(sp: ServicePort, ep: Endpoint) -> str:
    """servicePortEndpointChainNameBase: an IPv6 address's colons become dots (chain names may
    not hold colons)."""
    ip = ep.ip.replace(":", ".")
    key = sp.key
    return hash_and_truncate(
        f"{key.namespace}/{key.name}/{sp.protocol.keyword}/{key.port_name}__{ip}/{ep.port}"
    )


class KubeProxyLayout:
    """Plan (one family's service ports) -> kube-proxy's table."""

    def __init__(
        self,
        plan: Plan,
        ports: tuple[ServicePort, ...],
        table: Table,
        *,
        element_comments: bool,
        rule_comments: bool,
        hooks: bool,
    ) -> None:
        config = plan.config
        family = table.family
        self.nft = nft = spelling(family)
        self.ports = ports
        self.table = table
        self.rule_comments = rule_comments
        # kube-proxy comments its no-endpoint elements whatever the cluster's size (its iptables
        # mode drops per-endpoint comments above 1000 endpoints; these are per service port).
        self.element_comments = rule_comments
        del element_comments
        self.hooks = hooks
        self.cluster_cidr = config.cluster_cidr(family)
        self.masquerade_all = config.masquerade_all
        self.mark = config.masquerade_mark
        self.node_ip = config.node_ip(family)
        # kube-proxy's nftables mode reads an unset nodePortAddresses as `primary`
        # (cmd/kube-proxy/app/server_linux.go, platformApplyDefaults).
        self.node_port_ips = config.node_port_ips(family, unset_means_primary=True)
        # The ClusterIP guard drops unallocated addresses of these (none: no drop rule, as kube-proxy
        # without ServiceCIDRs; proxier.go OnServiceCIDRsChanged keeps its own family's).
        self.service_cidrs = plan.service_cidrs_of(family)
        self.warnings: list[str] = []
        self.chains: list[Chain] = []
        self.affinity_sets: list[Set] = []

        frontend = f"{nft.addr_type} . inet_proto . inet_service : verdict"
        nodeport = "inet_proto . inet_service : verdict"
        self.cluster_ips = Collection(Set("cluster-ips", type=nft.addr_type, comment="Active ClusterIPs"))
        self.nodeport_ips = Collection(
            Set("nodeport-ips", type=nft.addr_type, comment="IPs that accept NodePort traffic")
        )
        self.firewall_ips = Collection(
            Map(
                "firewall-ips",
                type=frontend,
                comment="destinations that are subject to LoadBalancerSourceRanges",
            )
        )
        self.no_endpoint_nodeports = Collection(
            Map(
                "no-endpoint-nodeports",
                type=nodeport,
                comment="vmap to drop or reject packets to service nodeports with no endpoints",
            )
        )
        self.no_endpoint_services = Collection(
            Map(
                "no-endpoint-services",
                type=frontend,
                comment="vmap to drop or reject packets to services with no endpoints",
            )
        )
        self.service_ips = Collection(
            Map("service-ips", type=frontend, comment="ClusterIP, ExternalIP and LoadBalancer IP traffic")
        )
        self.service_nodeports = Collection(
            Map("service-nodeports", type=nodeport, comment="NodePort traffic")
        )

    # -- per service port (syncProxyRules) -----------------------------------------------------

    def build(self) -> list[str]:
        for sp in self.ports:
            self._service_port(sp)
        self._assemble()
        return self.warnings

    def _claim(self, target: Collection, key: str, value: str, sp: ServicePort, comment: str = "") -> None:
        """First service port to offer a key keeps it (kube-proxy's map would keep whichever it
        wrote last, in Go's random map order): the later one is reported."""
        if not target.add(key, value, comment):
            self.warnings.append(
                f"{sp.key}: {target.name} already has {key}; the first service port keeps it"
            )

    def _service_port(self, sp: ServicePort) -> None:
        proto = sp.protocol.keyword
        base = service_port_base(sp)
        cluster_chain, local_chain = f"service-{base}", f"local-{base}"
        external_chain, firewall_chain = f"external-{base}", f"firewall-{base}"
        internal_chain = local_chain if sp.internal_policy_local else cluster_chain
        external_policy_chain = local_chain if sp.external_policy_local else cluster_chain
        comment = str(sp.key) if self.element_comments else ""

        has_endpoints = sp.has_endpoints
        has_internal, has_external = sp.has_internal_endpoints, sp.has_external_endpoints
        uses_cluster = bool(sp.cluster_endpoints) and sp.uses_cluster_endpoints
        uses_local = bool(sp.local_endpoints) and sp.uses_local_endpoints
        uses_external = has_endpoints and sp.externally_accessible
        # Unlike its iptables mode, kube-proxy's nftables mode installs the firewall whether or
        # not the service has endpoints (proxier.go: usesFWChain).
        uses_firewall = bool(sp.load_balancer_ips) and bool(sp.source_ranges)
        if not has_endpoints:
            internal_verdict = external_verdict = REJECT
        else:
            internal_verdict = external_verdict = "drop"

        self.cluster_ips.add(sp.cluster_ip)
        if has_internal:
            self._claim(
                self.service_ips, f"{sp.cluster_ip} . {proto} . {sp.port}", f"goto {internal_chain}", sp
            )
        else:
            self.no_endpoint_services.add(f"{sp.cluster_ip} . {proto} . {sp.port}", internal_verdict, comment)
        for ip in sp.external_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if has_endpoints:
                self._claim(self.service_ips, key, f"goto {external_chain}", sp)
            if not has_external:
                self.no_endpoint_services.add(key, external_verdict, comment)
        for ip in sp.load_balancer_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if has_endpoints:
                self._claim(self.service_ips, key, f"goto {external_chain}", sp)
            if uses_firewall:
                self._claim(self.firewall_ips, key, f"goto {firewall_chain}", sp)
        if not has_external:
            for ip in sp.load_balancer_ips:
                self.no_endpoint_services.add(f"{ip} . {proto} . {sp.port}", external_verdict, comment)
        if sp.node_port:
            key = f"{proto} . {sp.node_port}"
            if has_endpoints:
                self._claim(self.service_nodeports, key, f"goto {external_chain}", sp)
            if not has_external:
                self.no_endpoint_nodeports.add(key, external_verdict, comment)

        chains: dict[str, Chain] = {}

        def chain(name: str) -> Chain:
            if name not in chains:
                chains[name] = Chain(name)
            return chains[name]

        # Chains exist in kube-proxy's order of ensureChain (the comparison does not care).
        for ep in sp.reachable_endpoints:
            chain(f"endpoint-{endpoint_base(sp, ep)}")
        if uses_cluster:
            chain(cluster_chain)
        if uses_local:
            chain(local_chain)
        if uses_external:
            chain(external_chain)
        if uses_firewall:
            chain(firewall_chain)

        self._masquerade_rule(sp, has_internal, chain, internal_chain)
        if uses_external:
            self._external_rules(
                sp, chain(external_chain), cluster_chain, external_policy_chain, has_external
            )
        if uses_firewall:
            chain(firewall_chain).add(
                f"{self.nft.saddr} != {{ {', '.join(self._allowed_sources(sp))} }} drop"
            )
        if sp.affinity_timeout:
            for ep in sp.reachable_endpoints:
                self.affinity_sets.append(
                    Set(
                        f"affinity-{endpoint_base(sp, ep)}",
                        type=self.nft.addr_type,
                        flags=("dynamic", "timeout"),
                        timeout=sp.affinity_timeout,
                    )
                )
        if uses_cluster:
            self._endpoint_dispatch(sp, chain(cluster_chain), sp.cluster_endpoints)
        if uses_local:
            self._endpoint_dispatch(sp, chain(local_chain), sp.local_endpoints)
        for ep in sp.reachable_endpoints:
            self._endpoint_rules(sp, ep, chain(f"endpoint-{endpoint_base(sp, ep)}"))
        self.chains.extend(chains.values())

    def _masquerade_rule(
        self, sp: ServicePort, has_internal: bool, chain: Callable[[str], Chain], internal_chain: str
    ) -> None:
        """Off-cluster traffic to a ClusterIP is masqueraded (a route to the service range via any
        node); with masqueradeAll, all of it."""
        if not has_internal:
            return
        dst = f"{self.nft.daddr} {sp.cluster_ip}"
        if self.masquerade_all:
            chain(internal_chain).add(f"{dst} jump mark-for-masquerade")
        elif self.cluster_cidr:
            chain(internal_chain).add(
                f"{dst} {self.nft.saddr} != {self.cluster_cidr} jump mark-for-masquerade"
            )

    def _external_rules(
        self, sp: ServicePort, ext: Chain, cluster_chain: str, policy_chain: str, has_external: bool
    ) -> None:
        rc = self._rule_comment
        if not sp.external_policy_local:
            # Non-local endpoints: masquerade, in case the packet crosses nodes.
            ext.add("jump mark-for-masquerade")
        else:
            if self.cluster_cidr:
                # Pod -> external IP: as if out to the load balancer and back (neither policy).
                ext.add(
                    f"{self.nft.saddr} {self.cluster_cidr} goto {cluster_chain}",
                    rc("short-circuit pod traffic"),
                )
            ext.add("fib saddr type local jump mark-for-masquerade", rc("masquerade local traffic"))
            ext.add(f"fib saddr type local goto {cluster_chain}", rc("short-circuit local traffic"))
        if has_external:
            ext.add(f"goto {policy_chain}")

    def _allowed_sources(self, sp: ServicePort) -> list[str]:
        """The source ranges of the table's family as kube-proxy writes them (cidr.String(), in
        the Service's order), plus the load-balancer IPs when a range holds the node IP (a
        VIP-like load balancer loops node traffic back from the VIP)."""
        family = self.nft.family
        ranges = [ipaddress.ip_network(r.strip(), strict=False) for r in sp.source_ranges]
        ranges = [r for r in ranges if r.version == family.version]
        out = [str(r) for r in ranges]
        if self.node_ip is not None and any(ipaddress.ip_address(self.node_ip) in r for r in ranges):
            out += list(sp.load_balancer_ips)
        return out

    def _endpoint_dispatch(self, sp: ServicePort, chain: Chain, endpoints: tuple[Endpoint, ...]) -> None:
        """writeServiceToEndpointRules: affinity first, then a uniform pick."""
        bases = [endpoint_base(sp, ep) for ep in endpoints]
        if sp.affinity_timeout:
            for base in bases:
                chain.add(f"{self.nft.saddr} @affinity-{base} goto endpoint-{base}")
        targets = " , ".join(f"{i} : goto endpoint-{base}" for i, base in enumerate(bases))
        chain.add(f"numgen random mod {len(bases)} vmap {{ {targets} }}")

    def _endpoint_rules(self, sp: ServicePort, ep: Endpoint, chain: Chain) -> None:
        nft = self.nft
        chain.add(f"{nft.saddr} {ep.ip} jump mark-for-masquerade")  # hairpin
        if sp.affinity_timeout:
            chain.add(f"update @affinity-{endpoint_base(sp, ep)} {{ {nft.saddr} }}")
        chain.add(f"meta l4proto {sp.protocol.keyword} dnat to {nft.address_and_port(ep.ip, ep.port)}")

    # -- fixed part (setupNFTables) ------------------------------------------------------------

    def _rule_comment(self, text: str) -> str:
        return text if self.rule_comments else ""

    def _hooked(self, name: str, hook: Hook) -> Chain:
        return Chain(name, "", hook if self.hooks else None)

    def _assemble(self) -> None:
        t = self.table
        t.comment = TABLE_COMMENT
        if self.node_port_ips is not None:
            for ip in self.node_port_ips:
                # kube-proxy: "localhost NodePorts are not supported" in nftables mode.
                if not ipaddress.ip_address(ip).is_loopback:
                    self.nodeport_ips.add(ip)
        sets = [self.cluster_ips, *([self.nodeport_ips] if self.node_port_ips is not None else [])]
        maps = [
            self.firewall_ips,
            self.no_endpoint_nodeports,
            self.no_endpoint_services,
            self.service_ips,
            self.service_nodeports,
        ]
        for collection in [*sets, *maps]:
            t.collection(collection.finish())
        for affinity in self.affinity_sets:
            t.collection(affinity)
        for chain in self._fixed_chains():
            t.chain(chain)
        for chain in self.chains:
            t.chain(chain)

    def _fixed_chains(self) -> Iterable[Chain]:
        nft = self.nft
        rc = self._rule_comment
        frontend = f"{nft.daddr} . meta l4proto . th dport"
        for name, hook, targets in BASE_CHAINS:
            chain = self._hooked(name, hook)
            for target in targets:
                chain.add(f"ct state new jump {target}")
            yield chain
        for name, hook, target in NAT_CHAINS:
            chain = self._hooked(name, hook)
            chain.add(f"jump {target}")
            yield chain

        guard = Chain("cluster-ips-check")
        guard.add(f"{nft.daddr} @cluster-ips reject", rc("Reject traffic to invalid ports of ClusterIPs"))
        if self.service_cidrs:
            guard.add(
                f"{nft.daddr} {{ {','.join(self.service_cidrs)} }} drop",
                rc("Drop traffic to unallocated ClusterIPs"),
            )
        yield guard

        firewall = Chain("firewall-check")
        firewall.add(f"{frontend} vmap @firewall-ips")
        yield firewall

        services = Chain("services")
        services.add(f"{frontend} vmap @service-ips")
        endpoints_check = Chain("service-endpoints-check")
        endpoints_check.add(f"{frontend} vmap @no-endpoint-services")
        nodeports_check = Chain("nodeport-endpoints-check")
        if self.node_port_ips is None:
            no_localhost = f"{nft.daddr} != {nft.loopback_cidr}"
            services.add(f"fib daddr type local {no_localhost} {NODEPORT_EXPR} vmap @service-nodeports")
            nodeports_check.add(f"{no_localhost} {NODEPORT_EXPR} vmap @no-endpoint-nodeports")
        else:
            services.add(f"{nft.daddr} @nodeport-ips {NODEPORT_EXPR} vmap @service-nodeports")
            nodeports_check.add(f"{nft.daddr} @nodeport-ips {NODEPORT_EXPR} vmap @no-endpoint-nodeports")
        yield services
        yield endpoints_check
        yield nodeports_check

        reject = Chain("reject-chain", "helper for @no-endpoint-services / @no-endpoint-nodeports")
        reject.add("reject")
        yield reject

        mark = Chain("mark-for-masquerade")
        mark.add(f"mark set mark or {self.mark}")
        yield mark
        masquerading = Chain("masquerading")
        masquerading.add(f"mark and {self.mark} == 0 return")
        # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
        masquerading.add(f"mark set mark xor {self.mark}")
        masquerading.add("masquerade fully-random")
        yield masquerading
