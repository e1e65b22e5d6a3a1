"""The iptables rules kube-proxy's IPVS mode installs next to IPVS (writeIptablesRules).

IPVS balances; iptables only marks for masquerade, filters and accepts, matching on the
ipsets. Unlike kube-proxy, which writes a set's rule only while the set has entries, every
rule is always written (an empty set matches nothing, so the behaviour is the same): the
payload then depends on the configuration alone, plus one OUTPUT rule per LoadBalancer IP
the node may not reach, and a Service change never rewrites iptables -- only ipset entries
and IPVS objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from svc2rules.backends.ipvs.names import IpvsNames
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.syntax.xtables import Jump, Rule, Table, comment


class _Companion:
    def __init__(self, config: ProxyConfig, names: IpvsNames, family: IPFamily, comments: bool) -> None:
        self.config = config
        self.n = names
        self.family = family
        self.comments = comments
        self.mark = config.masquerade_mark
        self.nat = Table("nat")
        self.filter = Table("filter")

    def c(self, text: str) -> str:
        return comment(text) if self.comments else ""

    @staticmethod
    def match(set_name: str, flags: str) -> str:
        return f"-m set --match-set {set_name} {flags}"

    def build(self, blocked_from_node: Sequence[tuple[str, str, int, str]]) -> None:
        n, nat, filt, m = self.n, self.nat, self.filter, self.match
        for chain in (n.services, n.postrouting, n.node_port, n.load_balancer, n.mark_masq):
            nat.chain(chain)
        for chain in (n.forward, n.node_port, n.firewall, n.source_ranges, n.filter, n.out_filter):
            filt.chain(chain)

        # Connections from the node to itself never go through IPVS as a service.
        nat.add(n.services, f"-s {self.family.loopback_cidr} -j RETURN")
        nat.add(
            n.postrouting,
            self.c("Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
            m(n.loop_back, "dst,dst,src"),
            "-j MASQUERADE",
        )
        nat.add(
            n.services,
            self.c("Kubernetes service lb portal"),
            m(n.load_balancer_set, "dst,dst"),
            f"-j {n.load_balancer}",
        )
        # The *-LOCAL sets come first: RETURN (keep the client's address) before MARK-MASQ.
        nat.add(
            n.load_balancer,
            self.c("Kubernetes service load balancer ip and port with externalTrafficPolicy=local"),
            m(n.load_balancer_local, "dst,dst"),
            "-j RETURN",
        )
        for proto, flags in (("tcp", "dst"), ("udp", "dst"), ("sctp", "dst,dst")):
            nat.add(
                n.node_port,
                f"-p {proto}",
                self.c(f"Kubernetes nodeport {proto.upper()} port with externalTrafficPolicy=local"),
                m(n.node_port_set(proto, local=True), flags),
                "-j RETURN",
            )
            nat.add(
                n.node_port,
                f"-p {proto}",
                self.c(f"Kubernetes nodeport {proto.upper()} port for masquerade purpose"),
                m(n.node_port_set(proto, local=False), flags),
                f"-j {n.mark_masq}",
            )
        filt.add(
            n.firewall,
            self.c("Kubernetes service load balancer ip and port for load balancer with sourceRange"),
            m(n.load_balancer_fw, "dst,dst"),
            f"-j {n.source_ranges}",
        )
        filt.add(
            n.source_ranges,
            self.c("Kubernetes service load balancer ip, port and source cidr for packet filter purpose"),
            m(n.lb_source_cidr, "dst,dst,src"),
            "-j RETURN",
        )
        filt.add(
            n.source_ranges,
            self.c("Kubernetes service load balancer ip, port and source IP for packet filter purpose"),
            m(n.lb_source_ip, "dst,dst,src"),
            "-j RETURN",
        )

        self._cluster_ip_masquerade()
        external_text = self.c("Kubernetes service external ip and port for masquerade and filter purpose")
        nat.add(n.services, external_text, m(n.external_ip, "dst,dst"), f"-j {n.mark_masq}")
        for set_name, text in (
            (n.external_ip, external_text),
            (
                n.external_ip_local,
                self.c("Kubernetes service external ip and port with externalTrafficPolicy=local"),
            ),
        ):
            # Traffic from off the machine (not bridged from a pod, not local) and traffic to
            # an external IP that happens to be local is let through to IPVS untouched.
            nat.add(
                n.services,
                text,
                m(set_name, "dst,dst"),
                "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL",
                "-j ACCEPT",
            )
            nat.add(n.services, text, m(set_name, "dst,dst"), "-m addrtype --dst-type LOCAL", "-j ACCEPT")
        nat.add(n.services, "-m addrtype --dst-type LOCAL", f"-j {n.node_port}")
        nat.add(n.load_balancer, f"-j {n.mark_masq}")
        filt.add(n.source_ranges, "-j DROP")
        for ip, proto, port, service in blocked_from_node:
            # The node's own connections come from the VIP itself and are already steered by
            # IPVS in OUTPUT, so they are recognised by the IPVS connection, not the address.
            filt.add(
                n.out_filter,
                self.c(f"{service} loadbalancer IP, source ranges exclude the node"),
                f"-s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port}",
                "-j DROP",
            )
        # Accept what IPVS will handle, so that later nat rules (of other tools) leave it alone.
        nat.add(n.services, m(n.cluster_ip, "dst,dst"), "-j ACCEPT")
        nat.add(n.services, m(n.load_balancer_set, "dst,dst"), "-j ACCEPT")

        filt.add(
            n.forward,
            self.c("kubernetes forwarding rules"),
            f"-m mark --mark {self.mark}/{self.mark}",
            "-j ACCEPT",
        )
        filt.add(
            n.forward,
            self.c("kubernetes forwarding conntrack rule"),
            "-m conntrack --ctstate RELATED,ESTABLISHED",
            "-j ACCEPT",
        )
        filt.add(
            n.node_port, self.c("Kubernetes health check node port"), m(n.health_check, "dst"), "-j ACCEPT"
        )
        # Bound VIPs answer on service ports only: new connections to any other port of
        # theirs would otherwise reach the node's own sockets (kubernetes#72236).
        for set_name, flags in (
            (n.load_balancer_set, "dst,dst"),
            (n.cluster_ip, "dst,dst"),
            (n.external_ip, "dst,dst"),
            (n.external_ip_local, "dst,dst"),
            (n.health_check, "dst"),
        ):
            filt.add(n.filter, m(set_name, flags), "-j RETURN")
        filt.add(n.filter, "-m conntrack --ctstate NEW", m(n.bound_ips, "dst"), "-j REJECT")

        nat.add(n.postrouting, f"-m mark ! --mark {self.mark}/{self.mark}", "-j RETURN")
        # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
        nat.add(n.postrouting, f"-j MARK --xor-mark {self.mark}")
        nat.add(
            n.postrouting, self.c("kubernetes service traffic requiring SNAT"), "-j MASQUERADE --random-fully"
        )
        nat.add(n.mark_masq, f"-j MARK --or-mark {self.mark}")
        self._jumps()

    def _cluster_ip_masquerade(self) -> None:
        n = self.n
        head = (self.c("Kubernetes service cluster ip and port for masquerade purpose"),)
        cidr = self.config.cluster_cidr(self.family)
        if self.config.masquerade_all:
            self.nat.add(n.services, *head, self.match(n.cluster_ip, "dst,dst"), f"-j {n.mark_masq}")
        elif cidr:
            # Off-cluster clients reaching a VIP may have been routed here by another node:
            # masquerade so that replies come back through this node.
            self.nat.add(
                n.services, *head, self.match(n.cluster_ip, "dst,dst"), f"! -s {cidr}", f"-j {n.mark_masq}"
            )
        else:
            # No way to tell pods apart: masquerade the node's own connections, whose source is
            # the VIP itself (it is bound to our dummy interface).
            self.nat.add(n.services, *head, self.match(n.cluster_ip, "src,dst"), f"-j {n.mark_masq}")

    def _jumps(self) -> None:
        n = self.n
        jumps = [
            (self.nat, "OUTPUT", "kubernetes service portals", n.services),
            (self.nat, "PREROUTING", "kubernetes service portals", n.services),
            (self.nat, "POSTROUTING", "kubernetes postrouting rules", n.postrouting),
            (self.filter, "FORWARD", "kubernetes forwarding rules", n.forward),
            (self.filter, "INPUT", "kubernetes health check rules", n.node_port),
            (self.filter, "INPUT", "kube-proxy firewall rules", n.firewall),
            (self.filter, "FORWARD", "kube-proxy firewall rules", n.firewall),
            (self.filter, "INPUT", "kubernetes ipvs access filter", n.filter),
            (self.filter, "OUTPUT", "kubernetes ipvs access filter", n.out_filter),
        ]
        for table, chain, text, target in jumps:
            table.jumps.append(Jump(chain, f"{comment(text)} -j {target}"))


def build_companion(
    config: ProxyConfig,
    names: IpvsNames,
    family: IPFamily,
    blocked_from_node: Sequence[tuple[str, str, int, str]],
    comments: bool,
    jumps: bool,
) -> tuple[Table, Table]:
    """The nat and filter tables, with their jumps from the built-in chains when `jumps`."""
    builder = _Companion(config, names, family, comments)
    builder.build(blocked_from_node)
    for table in (builder.nat, builder.filter):
        # Printed chain by chain, in the order the chains are declared.
        table.rules = [Rule(chain, spec) for chain, specs in table.rules_by_chain().items() for spec in specs]
        if not jumps:
            table.jumps.clear()
    return builder.nat, builder.filter
