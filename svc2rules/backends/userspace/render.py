"""Plan -> iptables-restore payload for the userspace proxy mode.

Every frontend of a service port (ClusterIP, externalIPs, LoadBalancer IPs, NodePorts) is
REDIRECTed, in nat PREROUTING (pods, outside) and OUTPUT (the node itself), to the port the
proxy listens on for the endpoint list that frontend and client use — the same choices
kube-proxy's iptables mode makes between its SVC (Cluster) and SVL (Local) chains. What the
iptables mode DNATs to an endpoint goes to the proxy instead; what it REJECTs or DROPs is
REJECTed or DROPped in the filter table the same way. There is no masquerading: the proxy
opens its own connection to the endpoint, so endpoints always see a node address.

Chains are `<prefix>-USERSPACE-*` (at most 28 characters for a prefix of up to 8), distinct
from the iptables backend's, and each is declared (so flushed) by the payload: load it with
`iptables-restore -w --noflush`.
"""

from __future__ import annotations

import ipaddress

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.layout import FAMILIES, Layout, Pool, build_layout, proxied
from svc2rules.backends.userspace.names import UserspaceChains
from svc2rules.family import FAMILIES as ALL_FAMILIES
from svc2rules.family import IPFamily
from svc2rules.ir import Plan, ServicePort
from svc2rules.syntax import xtables
from svc2rules.syntax.xtables import Jump, Table, comment
from svc2rules.templating import render_template

LOADER = "iptables-restore --noflush"


def render_userspace(plan: Plan, options: RenderOptions[Addressing]) -> Artifact:
    addressing = options.backend or Addressing.create()
    layout = build_layout(plan, addressing.port_range)
    parts = []
    for family in sorted(FAMILIES):
        tables = build_tables(plan, layout, addressing, options, family)
        text = render_template(
            "userspace/restore.j2",
            rules=xtables.write_tables(tables, jumps=options.jumps),
            prefix=options.chain_prefix,
            addressing=addressing,
        )
        parts.append(ArtifactPart(family, LOADER, text))
    return Artifact("userspace", tuple(parts), warnings(plan, layout))


def warnings(plan: Plan, layout: Layout) -> tuple[str, ...]:
    out = []
    served = " and ".join(sorted(FAMILIES))
    for family in ALL_FAMILIES:
        count = sum(1 for sp in layout.skipped if sp.family == family)
        if family not in FAMILIES and count:
            out.append(f"{count} {family} service port(s) not rendered: the userspace proxy is {served} only")
    other = sum(1 for sp in layout.skipped if sp.family in FAMILIES)
    if other:
        out.append(f"{other} SCTP service port(s) not rendered: the userspace proxy relays TCP and UDP only")
    clashing = sorted({sp.node_port for sp in plan.service_ports if sp.node_port in layout.port_range})
    if clashing:
        shown = ", ".join(str(p) for p in clashing[:5]) + (", ..." if len(clashing) > 5 else "")
        out.append(
            f"NodePort(s) {shown} lie inside the proxy port range {layout.port_range}; choose another range"
        )
    return tuple(out)


def build_tables(
    plan: Plan, layout: Layout, addressing: Addressing, options: RenderOptions[Addressing], family: IPFamily
) -> tuple[Table, Table]:
    """The filter and nat tables of one family, jumps included (whether they are written or
    loaded is the caller's choice: `options.jumps`)."""
    return _Builder(plan, layout, addressing, options, family).build()


class _Builder:
    def __init__(
        self,
        plan: Plan,
        layout: Layout,
        addressing: Addressing,
        options: RenderOptions[Addressing],
        family: IPFamily,
    ) -> None:
        self.config = plan.config
        self.family = family
        self.ports = tuple(sp for sp in plan.service_ports if proxied(sp) and sp.family == family)
        self.layout = layout
        self.addressing = addressing
        self.names = UserspaceChains.for_prefix(options.chain_prefix)
        self.comments = options.comments.on
        self.cluster_cidr = plan.config.cluster_cidr(family)
        self.filter = Table("filter")
        self.nat = Table("nat")

    def c(self, text: str) -> str:
        return comment(text) if self.comments else ""

    def to_proxy(self, sp: ServicePort, pool: Pool) -> str:
        port = self.layout.port(sp, pool)
        if self.addressing.redirects:
            return f"-j REDIRECT --to-ports {port}"
        return f"-j DNAT --to-destination {self.addressing.bind}:{port}"

    def build(self) -> tuple[Table, Table]:
        n = self.names
        self.filter.chain(n.filter)
        self.nat.chain(n.portals)
        self.nat.chain(n.node_ports)
        for sp in self.ports:
            self._service_port(sp)
        self._node_port_dispatch()
        self._jumps()
        return self.filter, self.nat

    def _node_port_dispatch(self) -> None:
        n = self.names
        text = self.c("svc2rules userspace nodeports; NOTE: this must be the last rule in this chain")
        node_ips = self.config.node_port_ips(self.family)
        if node_ips is None:
            local = "-m addrtype --dst-type LOCAL"
            if not self.config.localhost_nodeports:
                local += f" ! -d {self.family.loopback_cidr}"
            self.nat.add(n.portals, text, local, f"-j {n.node_ports}")
            return
        for ip in node_ips:
            if ipaddress.ip_address(ip).is_loopback and not self.config.localhost_nodeports:
                continue
            self.nat.add(n.portals, text, f"-d {ip}", f"-j {n.node_ports}")

    def _jumps(self) -> None:
        n = self.names
        text = comment("svc2rules userspace service portals")
        new = "-m conntrack --ctstate NEW"
        for chain in ("INPUT", "FORWARD", "OUTPUT"):
            self.filter.jumps.append(Jump(chain, f"{new} {text} -j {n.filter}"))
        for chain in ("OUTPUT", "PREROUTING"):
            self.nat.jumps.append(Jump(chain, f"{text} -j {n.portals}"))

    # -- per service port ----------------------------------------------------------------------

    def _service_port(self, sp: ServicePort) -> None:
        n = self.names
        name = str(sp.key)
        proto = sp.protocol.keyword
        match = f"-m {proto} -p {proto}"
        if not sp.has_endpoints:
            verdict, why = "REJECT", f"{name} has no endpoints"
        else:
            verdict, why = "DROP", f"{name} has no local endpoints"

        dst_cluster = f"-d {sp.cluster_ip} --dport {sp.port}"
        if sp.has_internal_endpoints:
            internal = Pool.LOCAL if sp.internal_policy_local else Pool.CLUSTER
            self.nat.add(
                n.portals, self.c(f"{name} cluster IP"), match, dst_cluster, self.to_proxy(sp, internal)
            )
        else:
            self.filter.add(n.filter, self.c(why), match, dst_cluster, f"-j {verdict}")

        for ip in sp.external_ips:
            dst = f"-d {ip} --dport {sp.port}"
            self._external(sp, n.portals, "external IP", dst, (None,))
            if not sp.has_external_endpoints:
                self.filter.add(n.filter, self.c(why), match, dst, f"-j {verdict}")

        for ip in sp.load_balancer_ips:
            dst = f"-d {ip} --dport {sp.port}"
            self._external(sp, n.portals, "loadbalancer IP", dst, self._allowed_sources(sp))
            if sp.uses_firewall:
                # What the source ranges did not let through keeps its destination and ends here.
                text = self.c(f"{name} traffic not accepted by loadBalancerSourceRanges")
                self.filter.add(n.filter, text, match, dst, "-j DROP")
            elif not sp.has_external_endpoints:
                self.filter.add(n.filter, self.c(why), match, dst, f"-j {verdict}")

        if sp.node_port:
            dst = f"--dport {sp.node_port}"
            self._external(sp, n.node_ports, "node port", dst, (None,))
            if not sp.has_external_endpoints:
                self.filter.add(
                    n.filter, self.c(why), "-m addrtype --dst-type LOCAL", match, dst, f"-j {verdict}"
                )

    def _allowed_sources(self, sp: ServicePort) -> tuple[str | None, ...]:
        if not sp.uses_firewall:
            return (None,)
        sources: list[str | None] = list(sp.source_ranges)
        node_ip = self.config.node_ip(self.family)
        if node_ip is not None and any(_contains(r, node_ip) for r in sp.source_ranges):
            # A VIP-like load balancer routes node-to-VIP traffic back with the VIP as source.
            sources += list(sp.load_balancer_ips)
        return tuple(sources)

    def _external(
        self, sp: ServicePort, chain: str, what: str, dst: str, sources: tuple[str | None, ...]
    ) -> None:
        """Rules for a frontend reachable from outside: kube-proxy's EXT chain, flattened.

        With externalTrafficPolicy Local, pods and the node itself still use the Cluster list
        (they are treated as if they had gone out to a load balancer and come back), and the
        rest uses the Local list — or is DROPped in the filter table when this node has none.
        """
        if not sp.uses_external_chain:
            return
        name = str(sp.key)
        proto = sp.protocol.keyword
        match = f"-m {proto} -p {proto}"
        external = Pool.LOCAL if sp.external_policy_local else Pool.CLUSTER
        for source in sources:
            src = f"-s {source}" if source else ""
            if sp.external_policy_local:
                pods = _intersection(source, self.cluster_cidr) if self.cluster_cidr else None
                if pods:
                    text = self.c(f"pod traffic for {name} {what}")
                    self.nat.add(chain, text, f"-s {pods}", match, dst, self.to_proxy(sp, Pool.CLUSTER))
                text = self.c(f"LOCAL traffic for {name} {what}")
                local = "-m addrtype --src-type LOCAL"
                self.nat.add(chain, text, src, local, match, dst, self.to_proxy(sp, Pool.CLUSTER))
            if sp.has_external_endpoints:
                self.nat.add(chain, self.c(f"{name} {what}"), src, match, dst, self.to_proxy(sp, external))


def _contains(cidr: str, ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


def _intersection(source: str | None, cidr: str) -> str | None:
    """The addresses in both (CIDRs either nest or are disjoint); None when disjoint."""
    if source is None:
        return cidr
    a = ipaddress.ip_network(source, strict=False)
    b = ipaddress.ip_network(cidr, strict=False)
    if a.version != b.version or not a.overlaps(b):
        return None
    return str(a if a.prefixlen >= b.prefixlen else b)
