"""`/proc/net/ip_vs`: the whole IPVS table in one read, for apply's quick check.

One read costs far less than a netlink dump per virtual server; it shows the scheduler,
whether the service is persistent, real servers and weights, in hex -- not the scheduler flags,
and the persistence timeout in jiffies (kernel-dependent: CONFIG_HZ), so not compared:

    TCP  AC1E000A:0050 mh  persistent 150000 FFFFFFFF
      -> 0AB40001:1F90      Masq    3      0          0
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from svc2rules.syntax.ipvsadm import VirtualServer

# thread-self, not self: /proc/self/net is the namespace of the process's main thread, and
# apply may run in a thread moved into another network namespace.
PATH = "/proc/thread-self/net/ip_vs"
_FORWARD = {"Masq": "masq", "Local": "local", "Tunnel": "tunnel", "Route": "route"}
# IP_VS_CONN_F_MASQ, _LOCALNODE, _TUNNEL, _DROUTE
_FORWARD_METHOD = {"Masq": 0, "Local": 1, "Tunnel": 2, "Route": 3}
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def _hex(address: str, port: int) -> str:
    return f"{int(ipaddress.IPv4Address(address)):08X}:{port:04X}"


def _unhex(text: str) -> tuple[str, int]:
    address, _, port = text.partition(":")
    return str(ipaddress.IPv4Address(int(address, 16))), int(port, 16)


@dataclass(frozen=True, slots=True)
class Destination:
    address: str
    port: int
    forward_method: int
    weight: int
    connections: int  # active + inactive


def destinations(text: str) -> dict[tuple[str, str, int], list[Destination]]:
    """Real servers of every IPv4 virtual server, by (protocol, address, port): one read
    instead of one netlink dump per virtual server."""
    out: dict[tuple[str, str, int], list[Destination]] = {}
    current: list[Destination] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("IP", "Prot"):
            continue
        if words[0] == "->":
            if current is not None and len(words) >= 6 and words[1] != "RemoteAddress:Port":
                address, port = _unhex(words[1])
                current.append(
                    Destination(
                        address,
                        port,
                        _FORWARD_METHOD.get(words[2], -1),
                        int(words[3]),
                        int(words[4]) + int(words[5]),
                    )
                )
            continue
        protocol = _PROTOCOLS.get(words[0])
        if protocol is None or len(words[1].partition(":")[0]) != 8:  # FWM and IPv6 services
            current = None
            continue
        address, port = _unhex(words[1])
        current = out.setdefault((protocol, address, port), [])
    return out


def expected(servers: list[VirtualServer]) -> dict[str, list[str]]:
    """How the kernel will print these virtual servers (header -> real servers)."""
    out = {}
    for vs in servers:
        header = f"{vs.protocol.upper()} {_hex(vs.address, vs.port)} {vs.scheduler}"
        if vs.persistence:
            header += " persistent"
        out[header] = sorted(f"{_hex(rs.address, rs.port)} masq {rs.weight}" for rs in vs.real_servers)
    return out


def parse(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("IP", "Prot"):
            continue
        if words[0] == "->":
            if current is not None and words[1] != "RemoteAddress:Port":
                current.append(f"{words[1]} {_FORWARD.get(words[2], words[2])} {words[3]}")
            continue
        header = " ".join(words[:3])
        if len(words) > 3 and words[3] == "persistent":
            header += " persistent"
        current = out.setdefault(header, [])
    return {header: sorted(dests) for header, dests in out.items()}


def matches(text: str, wanted: dict[str, list[str]]) -> bool:
    """Whether every virtual server of `wanted` is in the table exactly so (others are ignored)."""
    live = parse(text)
    return all(live.get(header) == dests for header, dests in wanted.items())
