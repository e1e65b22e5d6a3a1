"""The IP family: the bottom of every contract.

kube-proxy runs one proxier per family (metaproxier); svc2rules keeps the family in every
value that differs between them, so nothing above this module spells an IPv4 or IPv6 fact as
a literal. Target-specific spellings (nft's `ip`/`ip6`, `iptables`/`ip6tables`, ipset's
`inet`/`inet6`) belong to the syntax layer of that target and are keyed by this enum.
"""

from __future__ import annotations

import socket
from enum import StrEnum


class IPFamily(StrEnum):
    IPv4 = "IPv4"
    IPv6 = "IPv6"

    @classmethod
    def of(cls, address: str) -> IPFamily:
        """The family of an already-validated address or CIDR."""
        return cls.IPv6 if ":" in address else cls.IPv4

    @property
    def version(self) -> int:
        return 6 if self is IPFamily.IPv6 else 4

    @property
    def address_family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if self is IPFamily.IPv6 else socket.AF_INET

    @property
    def host_prefix(self) -> int:
        """The prefix length of a single address (a host route, a /32 or /128 CIDR)."""
        return 128 if self is IPFamily.IPv6 else 32

    @property
    def loopback_cidr(self) -> str:
        """The loopback network: kube-proxy never serves NodePorts there unless told to."""
        return "::1/128" if self is IPFamily.IPv6 else "127.0.0.0/8"

    @property
    def loopback(self) -> str:
        return "::1" if self is IPFamily.IPv6 else "127.0.0.1"

    @property
    def forwarding_sysctl(self) -> str:
        """The sysctl that lets the node route traffic to endpoints on other hosts."""
        return "net.ipv6.conf.all.forwarding" if self is IPFamily.IPv6 else "net.ipv4.ip_forward"

    @property
    def sysctl_prefix(self) -> str:
        """Where this family's sysctls live (`net.ipv4.` / `net.ipv6.`)."""
        return f"net.ipv{self.version}."

    @property
    def conntrack_family(self) -> str:
        """The `conntrack -f` argument."""
        return f"ipv{self.version}"

    @property
    def iproute_flag(self) -> str:
        """The `ip` command's family switch (`-4` / `-6`)."""
        return f"-{self.version}"


FAMILIES = (IPFamily.IPv4, IPFamily.IPv6)
