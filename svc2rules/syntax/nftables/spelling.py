"""How each IP family is spelt in nft: the one table of per-family words.

Everything above the syntax layer asks this table (keyed by `IPFamily`) instead of writing
`ip`, `ipv4_addr` or `/32` itself, so rendering IPv6 is a matter of asking for the other row.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass

from svc2rules.family import IPFamily


@dataclass(frozen=True, slots=True)
class Spelling:
    """One family's words in nft."""

    family: IPFamily
    # The table family (`table ip NAME`), which is also the protocol of payload expressions
    # (`ip daddr`, `dnat ip to`, `ct original ip daddr`).
    table_family: str
    # The data type of one address in a set or map declaration.
    addr_type: str

    @property
    def daddr(self) -> str:
        return f"{self.table_family} daddr"

    @property
    def saddr(self) -> str:
        return f"{self.table_family} saddr"

    @property
    def dnat_to(self) -> str:
        """The statement that rewrites the destination from a map lookup (`dnat ip to`)."""
        return f"dnat {self.table_family} to"

    @property
    def ct_original_daddr(self) -> str:
        return f"ct original {self.table_family} daddr"

    @property
    def loopback_cidr(self) -> str:
        return self.family.loopback_cidr

    def address_and_port(self, address: str, port: int) -> str:
        """`dnat to`'s target: an IPv6 address is bracketed so that its colons stay its own."""
        return f"[{address}]:{port}" if self.family is IPFamily.IPv6 else f"{address}:{port}"

    def interval(self, address: str, prefix: int) -> str:
        """An element of an interval set: a single address is written without its prefix."""
        return address if prefix >= self.family.host_prefix else f"{address}/{prefix}"

    @property
    def sort_key(self) -> Callable[[str], bytes]:
        """The sort key of an address of this family (numeric order); fetch it once, call it
        for every address (it is on the renderer's hot path)."""
        return functools.partial(socket.inet_pton, self.family.address_family)


SPELLINGS: dict[IPFamily, Spelling] = {
    IPFamily.IPv4: Spelling(IPFamily.IPv4, "ip", "ipv4_addr"),
    IPFamily.IPv6: Spelling(IPFamily.IPv6, "ip6", "ipv6_addr"),
}


def spelling(family: IPFamily) -> Spelling:
    return SPELLINGS[family]


def family_of_table(table_family: str) -> IPFamily | None:
    """The IPFamily of a table family word (`ip` / `ip6`), None for the others (inet, arp...)."""
    for spelt in SPELLINGS.values():
        if spelt.table_family == table_family:
            return spelt.family
    return None


def address_types() -> dict[str, IPFamily]:
    """Every address data type, and its family (the fake checks element keys with it)."""
    return {spelt.addr_type: spelt.family for spelt in SPELLINGS.values()}
