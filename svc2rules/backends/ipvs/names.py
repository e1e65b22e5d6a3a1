"""Names of everything the IPVS backend creates on a host.

kube-proxy's IPVS mode names its objects KUBE-*; ours carry the chain prefix (`SVC2R` by
default) so both can share a host. Chains are `<prefix>-IPVS-*`, never one of the iptables
backend's names; ipsets are `<prefix>-*`, at most 31 characters (the kernel's limit) for any
prefix `ChainNames` accepts (1-8 characters).
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends import check_chain_prefix
from svc2rules.backends.owned_chains import OwnedChains
from svc2rules.family import IPFamily
from svc2rules.syntax import ipset, xtables

# IFNAMSIZ is 16 including the terminating NUL.
DUMMY_INTERFACE = "svc2rules-ipvs0"
IPSET_NAME_MAX = ipset.NAME_MAX
IPTABLES_CHAIN_MAX = xtables.CHAIN_NAME_MAX


@dataclass(frozen=True, slots=True)
class IpvsNames:
    """Chain and ipset names for one prefix."""

    prefix: str

    @classmethod
    def for_prefix(cls, prefix: str) -> IpvsNames:
        check_chain_prefix(prefix)
        return cls(prefix)

    @property
    def chain_prefix(self) -> str:
        return f"{self.prefix}-IPVS-"

    def chain(self, suffix: str) -> str:
        return self.chain_prefix + suffix

    def set(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    # -- chains (kube-proxy's KUBE-* names in comments) ----------------------------------

    @property
    def services(self) -> str:  # nat KUBE-SERVICES
        return self.chain("SERVICES")

    @property
    def postrouting(self) -> str:  # nat KUBE-POSTROUTING
        return self.chain("POSTROUTING")

    @property
    def node_port(self) -> str:  # nat and filter KUBE-NODE-PORT
        return self.chain("NODE-PORT")

    @property
    def load_balancer(self) -> str:  # nat KUBE-LOAD-BALANCER
        return self.chain("LOAD-BALANCER")

    @property
    def mark_masq(self) -> str:  # nat KUBE-MARK-MASQ
        return self.chain("MARK-MASQ")

    @property
    def forward(self) -> str:  # filter KUBE-FORWARD
        return self.chain("FORWARD")

    @property
    def firewall(self) -> str:  # filter KUBE-PROXY-FIREWALL
        return self.chain("FIREWALL")

    @property
    def source_ranges(self) -> str:  # filter KUBE-SOURCE-RANGES-FIREWALL
        return self.chain("SRC-RANGES")

    @property
    def filter(self) -> str:  # filter KUBE-IPVS-FILTER (INPUT)
        return self.chain("FILTER")

    @property
    def out_filter(self) -> str:  # filter KUBE-IPVS-OUT-FILTER (OUTPUT)
        return self.chain("OUT-FILTER")

    @property
    def applied(self) -> str:
        """Carries the generation of the last apply (never part of the compiled text)."""
        return self.chain("APPLIED")

    def owns_chain(self, chain: str) -> bool:
        return chain.startswith(self.chain_prefix)

    def owned_chains(self, family: IPFamily) -> OwnedChains:
        """The companion chains of one family, as apply reads, compares and writes them."""
        return OwnedChains(family, self.chain_prefix, self.applied, "the ipvs backend's iptables rules")

    # -- ipsets (kube-proxy's KUBE-* names in comments) -----------------------------------

    @property
    def loop_back(self) -> str:  # KUBE-LOOP-BACK
        return self.set("LOOP-BACK")

    @property
    def cluster_ip(self) -> str:  # KUBE-CLUSTER-IP
        return self.set("CLUSTER-IP")

    @property
    def external_ip(self) -> str:  # KUBE-EXTERNAL-IP
        return self.set("EXTERNAL-IP")

    @property
    def external_ip_local(self) -> str:  # KUBE-EXTERNAL-IP-LOCAL
        return self.set("EXTERNAL-IP-LOCAL")

    @property
    def load_balancer_set(self) -> str:  # KUBE-LOAD-BALANCER
        return self.set("LOAD-BALANCER")

    @property
    def load_balancer_local(self) -> str:  # KUBE-LOAD-BALANCER-LOCAL
        return self.set("LOAD-BALANCER-LOCAL")

    @property
    def load_balancer_fw(self) -> str:  # KUBE-LOAD-BALANCER-FW
        return self.set("LOAD-BALANCER-FW")

    @property
    def lb_source_ip(self) -> str:  # KUBE-LOAD-BALANCER-SOURCE-IP
        return self.set("LB-SOURCE-IP")

    @property
    def lb_source_cidr(self) -> str:  # KUBE-LOAD-BALANCER-SOURCE-CIDR
        return self.set("LB-SOURCE-CIDR")

    def node_port_set(self, protocol: str, *, local: bool) -> str:
        """KUBE-NODE-PORT-{,LOCAL-}{TCP,UDP,SCTP-HASH}."""
        middle = "LOCAL-" if local else ""
        return self.set(f"NODE-PORT-{middle}{protocol.upper()}")

    @property
    def health_check(self) -> str:  # KUBE-HEALTH-CHECK-NODE-PORT
        return self.set("HEALTH-CHECK-PORT")

    @property
    def bound_ips(self) -> str:  # KUBE-IPVS-IPS
        return self.set("IPVS-IPS")

    @property
    def owned_virtual_servers(self) -> str:
        """apply's record, in the kernel, of the virtual servers it created (NodePort ones
        are not on our dummy interface, so nothing else would tell them from foreign ones)."""
        return self.set("IPVS-OWNED")
