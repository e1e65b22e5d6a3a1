"""Names of the chains the userspace backend creates: `<prefix>-USERSPACE-*` (at most 28
characters for a prefix of up to 8), never one of the iptables or ipvs backend's names."""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends import check_chain_prefix
from svc2rules.backends.owned_chains import OwnedChains
from svc2rules.family import IPFamily


@dataclass(frozen=True, slots=True)
class UserspaceChains:
    prefix: str

    @classmethod
    def for_prefix(cls, prefix: str) -> UserspaceChains:
        check_chain_prefix(prefix)
        return cls(prefix)

    @property
    def chain_prefix(self) -> str:
        return f"{self.prefix}-USERSPACE-"

    @property
    def portals(self) -> str:  # nat: every frontend, from PREROUTING and OUTPUT
        return self.chain_prefix + "PORTALS"

    @property
    def node_ports(self) -> str:  # nat: NodePorts, the last rule of PORTALS jumps here
        return self.chain_prefix + "NODEPORTS"

    @property
    def filter(self) -> str:  # filter: REJECT / DROP of what has no endpoint to go to
        return self.chain_prefix + "FILTER"

    @property
    def applied(self) -> str:
        """Carries the generation of the last apply (never part of the compiled text)."""
        return self.chain_prefix + "APPLIED"

    def owned_chains(self, family: IPFamily) -> OwnedChains:
        """Every chain of ours in one family, as apply reads, compares and writes them."""
        return OwnedChains(family, self.chain_prefix, self.applied, "the userspace backend's rules")
