"""Plan -> iptables-restore payload, following kube-proxy's iptables proxier.

The layout and rule order are kube-proxy's (pkg/proxy/iptables/proxier.go,
syncProxyRules), under our own chain prefix so both can share a host. Each chain we
declare is flushed by `:CHAIN - [0:0]`, so loading with `--noflush` replaces our
chains and leaves every other rule alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.iptables.rules import Jump, Table, comment
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Plan, ServicePort
from svc2rules.naming import ChainNames
from svc2rules.templating import render_template


def probability(n: int) -> str:
    """Probability of picking the first of n remaining endpoints, as kube-proxy prints it."""
    return f"{1.0 / n:0.10f}"


def render_iptables(plan: Plan, options: RenderOptions[None]) -> Artifact:
    tables, warnings = build_tables(plan, options)
    text = render_template(
        "iptables/restore.j2",
        tables=tables,
        jumps=options.jumps,
        prefix=options.chain_prefix,
    )
    return Artifact("iptables", (ArtifactPart(IPFamily.IPv4, "iptables-restore --noflush", text),), warnings)


def build_tables(
    plan: Plan,
    options: RenderOptions[None],
    *,
    on_port: Callable[[TableWriter, ServicePort | None], None] | None = None,
) -> tuple[list[Table], tuple[str, ...]]:
    """The filter and nat tables as objects (what the template prints); `apply` diffs these.

    `on_port(writer, service_port)` runs before each service port's rules are added, and
    `on_port(writer, None)` before the fixed tail: a service port only appends (chains and
    rules) to the tables, so what it added lies between two calls (apply keeps the tables
    per Service that way)."""
    ports = plan.for_family(IPFamily.IPv4)
    skipped = len(plan.service_ports) - len(ports)
    warnings = (
        (f"{skipped} IPv6 service port(s) not rendered: the iptables backend is IPv4 only",)
        if skipped
        else ()
    )
    writer = TableWriter(plan.config, options, endpoint_comments=endpoint_comments(ports, options))
    writer.head()
    for sp in ports:
        if on_port is not None:
            on_port(writer, sp)
        writer.add_port(sp)
    if on_port is not None:
        on_port(writer, None)
    writer.tail()
    return [writer.filter, writer.nat], warnings


def endpoint_comments(ports: Sequence[ServicePort], options: RenderOptions[None]) -> bool:
    """Whether endpoint rules carry comments: kube-proxy drops them in large clusters."""
    return options.comments.per_endpoint(sum(len(sp.reachable_endpoints) for sp in ports))


class TableWriter:
    """Fills the filter and nat tables: a fixed head, then each service port, then a fixed tail.

    A service port's rules depend on the port, the config, the options and whether endpoint
    rules carry comments, never on the other ports."""

    def __init__(self, config: ProxyConfig, options: RenderOptions[None], *, endpoint_comments: bool) -> None:
        self.config = config
        self.names = ChainNames(options.chain_prefix)
        self.mark = config.masquerade_mark
        self.cluster_cidr = config.cluster_cidr("IPv4")
        self.endpoint_comments = endpoint_comments
        self.all_comments = options.comments != "never"
        self.filter = Table("filter")
        self.nat = Table("nat")

    def c(self, text: str) -> str:
        return comment(text) if self.all_comments else ""

    def ec(self, text: str) -> str:
        return comment(text) if self.endpoint_comments else ""

    # -- fixed part ----------------------------------------------------------------------

    def head(self) -> None:
        """The chains and rules that come before every service port's."""
        n = self.names
        for chain in (n.services, n.external_services, n.forward, n.node_ports, n.proxy_firewall):
            self.filter.chain(chain)
        for chain in (n.services, n.node_ports, n.postrouting, n.mark_masq):
            self.nat.chain(chain)
        self.nat.add(n.postrouting, f"-m mark ! --mark {self.mark}/{self.mark}", "-j RETURN")
        # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
        self.nat.add(n.postrouting, f"-j MARK --xor-mark {self.mark}")
        self.nat.add(
            n.postrouting, self.c("kubernetes service traffic requiring SNAT"), "-j MASQUERADE --random-fully"
        )
        self.nat.add(n.mark_masq, f"-j MARK --or-mark {self.mark}")
        if self.config.localhost_nodeports:
            # route_localnet (needed for localhost NodePorts) opens 127/8 to the network;
            # kube-proxy and kubelet close that hole with this rule.
            self.filter.chain(n.firewall)
            self.filter.add(
                n.firewall,
                self.c("block incoming localnet connections"),
                "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            )

    def add_port(self, sp: ServicePort) -> None:
        self._service_port(sp)

    def tail(self) -> None:
        """The rules that come after every service port's, and the jumps."""
        n = self.names
        self._node_port_dispatch()
        if not self.config.conntrack_tcp_be_liberal:
            self.filter.add(n.forward, "-m conntrack --ctstate INVALID -j DROP")
        self.filter.add(
            n.forward,
            self.c("kubernetes forwarding rules"),
            f"-m mark --mark {self.mark}/{self.mark}",
            "-j ACCEPT",
        )
        self.filter.add(
            n.forward,
            self.c("kubernetes forwarding conntrack rule"),
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        )
        self._jumps()

    def _node_port_dispatch(self) -> None:
        n = self.names
        text = self.c("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        node_ips = self.config.node_port_ips("IPv4")
        if node_ips is None:
            local = "-m addrtype --dst-type LOCAL"
            if not self.config.localhost_nodeports:
                local += " ! -d 127.0.0.0/8"
            self.nat.add(n.services, text, local, f"-j {n.node_ports}")
            return
        for ip in node_ips:
            if ip.startswith("127.") and not self.config.localhost_nodeports:
                continue
            self.nat.add(n.services, text, f"-d {ip}", f"-j {n.node_ports}")

    def _jumps(self) -> None:
        n = self.names
        new = "-m conntrack --ctstate NEW"
        filter_jumps = [
            ("INPUT", new, "kubernetes externally-visible service portals", n.external_services),
            ("FORWARD", new, "kubernetes externally-visible service portals", n.external_services),
            ("INPUT", "", "kubernetes health check service ports", n.node_ports),
            ("FORWARD", new, "kubernetes service portals", n.services),
            ("OUTPUT", new, "kubernetes service portals", n.services),
            ("FORWARD", "", "kubernetes forwarding rules", n.forward),
            ("INPUT", new, "kubernetes load balancer firewall", n.proxy_firewall),
            ("OUTPUT", new, "kubernetes load balancer firewall", n.proxy_firewall),
            ("FORWARD", new, "kubernetes load balancer firewall", n.proxy_firewall),
        ]
        if self.config.localhost_nodeports:
            filter_jumps += [("INPUT", "", "", n.firewall), ("OUTPUT", "", "", n.firewall)]
        nat_jumps = [
            ("OUTPUT", "", "kubernetes service portals", n.services),
            ("PREROUTING", "", "kubernetes service portals", n.services),
            ("POSTROUTING", "", "kubernetes postrouting rules", n.postrouting),
        ]
        for table, jumps in ((self.filter, filter_jumps), (self.nat, nat_jumps)):
            for chain, match, text, target in jumps:
                parts = [p for p in (match, comment(text) if text else "", f"-j {target}") if p]
                table.jumps.append(Jump(chain, " ".join(parts)))

    # -- per service port ----------------------------------------------------------------

    def _service_port(self, sp: ServicePort) -> None:
        n = self.names
        name = str(sp.key)
        proto = sp.protocol.keyword
        match = f"-m {proto} -p {proto}"
        cluster_chain = n.cluster_policy(sp)
        local_chain = n.local_policy(sp)
        internal_chain = local_chain if sp.internal_policy_local else cluster_chain
        external_policy_chain = local_chain if sp.external_policy_local else cluster_chain
        external_chain = n.external(sp)
        fw_chain = n.firewall_chain(sp)
        lb_chain = fw_chain if sp.uses_firewall else external_chain

        if not sp.has_endpoints:
            internal_target = external_target = "REJECT"
            internal_text = external_text = f"{name} has no endpoints"
        else:
            internal_target = "DROP" if not sp.has_internal_endpoints else ""
            external_target = "DROP" if not sp.has_external_endpoints else ""
            internal_text = external_text = f"{name} has no local endpoints"

        dst_cluster = f"-d {sp.cluster_ip} --dport {sp.port}"
        if sp.has_internal_endpoints:
            self.nat.add(n.services, self.c(f"{name} cluster IP"), match, dst_cluster, f"-j {internal_chain}")
        else:
            self.filter.add(n.services, self.c(internal_text), match, dst_cluster, f"-j {internal_target}")

        for ip in sp.external_ips:
            dst = f"-d {ip} --dport {sp.port}"
            if sp.has_endpoints:
                self.nat.add(n.services, self.c(f"{name} external IP"), match, dst, f"-j {external_chain}")
            if not sp.has_external_endpoints:
                self.filter.add(
                    n.external_services, self.c(external_text), match, dst, f"-j {external_target}"
                )

        for ip in sp.load_balancer_ips:
            dst = f"-d {ip} --dport {sp.port}"
            if sp.has_endpoints:
                self.nat.add(n.services, self.c(f"{name} loadbalancer IP"), match, dst, f"-j {lb_chain}")
            if sp.uses_firewall:
                self.filter.add(
                    n.proxy_firewall,
                    self.c(f"{name} traffic not accepted by {fw_chain}"),
                    match,
                    dst,
                    "-j DROP",
                )
        if not sp.has_external_endpoints:
            for ip in sp.load_balancer_ips:
                dst = f"-d {ip} --dport {sp.port}"
                self.filter.add(
                    n.external_services, self.c(external_text), match, dst, f"-j {external_target}"
                )

        if sp.node_port:
            if sp.has_endpoints:
                self.nat.add(
                    n.node_ports, self.c(name), match, f"--dport {sp.node_port}", f"-j {external_chain}"
                )
            if not sp.has_external_endpoints:
                self.filter.add(
                    n.external_services,
                    self.c(external_text),
                    "-m addrtype --dst-type LOCAL",
                    match,
                    f"--dport {sp.node_port}",
                    f"-j {external_target}",
                )
        if sp.health_check_node_port:
            self.filter.add(
                n.node_ports,
                self.c(f"{name} health check node port"),
                "-m tcp -p tcp",
                f"--dport {sp.health_check_node_port}",
                "-j ACCEPT",
            )

        # Internal traffic: masquerade sources from outside the cluster (they may have
        # been routed here from another node and must get their replies back through us).
        if sp.has_internal_endpoints:
            head = (self.c(f"{name} cluster IP"), match, dst_cluster)
            if self.config.masquerade_all:
                self.nat.add(internal_chain, *head, f"-j {n.mark_masq}")
            elif self.cluster_cidr:
                self.nat.add(internal_chain, *head, f"! -s {self.cluster_cidr}", f"-j {n.mark_masq}")

        if sp.uses_external_chain:
            self.nat.chain(external_chain)
            if not sp.external_policy_local:
                self.nat.add(
                    external_chain,
                    self.c(f"masquerade traffic for {name} external destinations"),
                    f"-j {n.mark_masq}",
                )
            else:
                if self.cluster_cidr:
                    # Pods reaching an external address are treated as if they went out
                    # to a load balancer and came back: neither traffic policy applies.
                    self.nat.add(
                        external_chain,
                        self.c(f"pod traffic for {name} external destinations"),
                        f"-s {self.cluster_cidr}",
                        f"-j {cluster_chain}",
                    )
                self.nat.add(
                    external_chain,
                    self.c(f"masquerade LOCAL traffic for {name} external destinations"),
                    "-m addrtype --src-type LOCAL",
                    f"-j {n.mark_masq}",
                )
                self.nat.add(
                    external_chain,
                    self.c(f"route LOCAL traffic for {name} external destinations"),
                    "-m addrtype --src-type LOCAL",
                    f"-j {cluster_chain}",
                )
            if sp.has_external_endpoints:
                self.nat.add(external_chain, f"-j {external_policy_chain}")

        if sp.uses_firewall:
            self.nat.chain(fw_chain)
            text = self.c(f"{name} loadbalancer IP")
            node_ip = self.config.node_ip("IPv4")
            allow_from_node = False
            for source_range in sp.source_ranges:
                self.nat.add(fw_chain, text, f"-s {source_range}", f"-j {external_chain}")
                if node_ip is not None and _contains(source_range, node_ip):
                    allow_from_node = True
            if allow_from_node:
                # A VIP-like load balancer routes node-to-VIP traffic back with the VIP as source.
                for ip in sp.load_balancer_ips:
                    self.nat.add(fw_chain, text, f"-s {ip}", f"-j {external_chain}")
            self.nat.add(fw_chain, self.c(f"other traffic to {name} will be dropped by {n.proxy_firewall}"))

        ep_chains = {ep.address: n.endpoint(sp, ep) for ep in sp.reachable_endpoints}
        if sp.cluster_endpoints and sp.uses_cluster_endpoints:
            self.nat.chain(cluster_chain)
            self._endpoint_dispatch(sp, cluster_chain, sp.cluster_endpoints, ep_chains)
        if sp.local_endpoints and sp.uses_local_endpoints:
            self.nat.chain(local_chain)
            self._endpoint_dispatch(sp, local_chain, sp.local_endpoints, ep_chains)

        for ep in sp.reachable_endpoints:
            chain = ep_chains[ep.address]
            self.nat.chain(chain)
            text = self.ec(name)
            self.nat.add(chain, text, f"-s {ep.ip}", f"-j {n.mark_masq}")
            recent = f"-m recent --name {chain} --set" if sp.affinity_timeout else ""
            self.nat.add(chain, text, recent, match, f"-j DNAT --to-destination {ep.address}")

    def _endpoint_dispatch(
        self, sp: ServicePort, chain: str, endpoints: tuple[Endpoint, ...], ep_chains: dict[str, str]
    ) -> None:
        name = str(sp.key)
        if sp.affinity_timeout:
            for ep in endpoints:
                ep_chain = ep_chains[ep.address]
                self.nat.add(
                    chain,
                    self.ec(name),
                    f"-m recent --name {ep_chain} --rcheck --seconds {sp.affinity_timeout} --reap",
                    f"-j {ep_chain}",
                )
        count = len(endpoints)
        for i, ep in enumerate(endpoints):
            stat = (
                f"-m statistic --mode random --probability {probability(count - i)}" if i < count - 1 else ""
            )
            self.nat.add(chain, self.ec(f"{name} -> {ep.address}"), stat, f"-j {ep_chains[ep.address]}")


def _contains(cidr: str, ip: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
