"""The ClusterIP guard and the NodePort address match of the default layout, as kube-proxy's
nftables mode has them (pkg/proxy/nftables/proxier.go, syncProxyRules; pkg/proxy/nftables/
README.md).

* `cluster-ips` holds every ClusterIP of the family; chain `cluster-ips-check`, jumped to from
  filter forward and output for new connections (after DNAT, so a served connection no longer
  has a ClusterIP as destination), rejects what is left for a ClusterIP (a port the Service does
  not define) and drops what is left for a service CIDR (an address no Service holds). kube-proxy
  rejects undefined ports even without service CIDRs; here the guard comes with them alone, so a
  plan without service CIDRs loads what it loaded before.
* The NodePort dispatch and the no-endpoint verdicts for NodePorts match the same destinations:
  every local address but loopback, or exactly @nodeport-ips (kube-proxy: `nodePortAddresses`,
  whose unset value is `primary` in nftables mode).
"""

from __future__ import annotations

import ipaddress

from svc2rules.backends.nftables.objects import Collection
from svc2rules.ir import Plan
from svc2rules.syntax.nftables import Chain, Set, Spelling, Table

CLUSTER_IPS = "cluster-ips"
CHECK_CHAIN = "cluster-ips-check"
REJECT_COMMENT = "Reject traffic to invalid ports of ClusterIPs"
DROP_COMMENT = "Drop traffic to unallocated ClusterIPs"


class ClusterIPGuard:
    """The guard of one family's table; `enabled` only when the plan has a service CIDR of it."""

    def __init__(self, plan: Plan, nft: Spelling) -> None:
        self.nft = nft
        networks = [ipaddress.ip_network(c) for c in plan.service_cidrs_of(nft.family)]
        # One anonymous interval set: overlapping ranges (two ServiceCIDRs) are merged first.
        v4 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        v6 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        self.cidrs = tuple(str(n) for n in (*v4, *v6))
        self.enabled = bool(self.cidrs)
        self.cluster_ips = Collection(
            Set(CLUSTER_IPS, type=nft.addr_type, comment="Active ClusterIPs"), sort=True
        )

    def add(self, cluster_ip: str, comment: str) -> None:
        if self.enabled:
            self.cluster_ips.add(cluster_ip, None, comment, sort_key=self.nft.sort_key(cluster_ip))

    def collections(self) -> list[Collection]:
        return [self.cluster_ips] if self.enabled else []

    def hook(self, chain: Chain) -> None:
        """The jump from a filter chain (forward, output) that sees new connections after DNAT."""
        if self.enabled:
            chain.add(f"ct state new jump {CHECK_CHAIN}")

    def chains(self, table: Table, rule_comments: bool) -> None:
        if not self.enabled:
            return
        daddr = self.nft.daddr
        chain = table.chain(Chain(CHECK_CHAIN, "ClusterIP guard: what no service port DNATed"))
        chain.add(f"{daddr} @{CLUSTER_IPS} reject", REJECT_COMMENT if rule_comments else "")
        chain.add(f"{daddr} {{ {', '.join(self.cidrs)} }} drop", DROP_COMMENT if rule_comments else "")


def nodeport_destination(nft: Spelling, node_port_ips: tuple[str, ...] | None, has_set: bool) -> str | None:
    """The destination match of NodePort rules: every local address but loopback (None: every
    address is allowed), the @nodeport-ips set, or None when no address accepts NodePorts."""
    if node_port_ips is None:
        return f"fib daddr type local {nft.daddr} != {nft.loopback_cidr}"
    return f"{nft.daddr} @nodeport-ips" if has_set else None
