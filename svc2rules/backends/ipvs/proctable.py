"""`/proc/net/ip_vs`: the whole IPVS table in one read, for apply's quick check.

One read costs far less than a netlink dump per virtual server; it shows the scheduler,
whether the service is persistent, real servers and weights, in hex -- not the scheduler flags,
and the persistence timeout in jiffies (kernel-dependent: CONFIG_HZ), so not compared:

    TCP  AC1E000A:0050 mh  persistent 150000 FFFFFFFF
      -> 0AB40001:1F90      Masq    3      0          0
"""

from __future__ import annotations

import ipaddress

from svc2rules.backends.ipvs.model import VirtualServer

PATH = "/proc/net/ip_vs"
_FORWARD = {"Masq": "masq", "Local": "local", "Tunnel": "tunnel", "Route": "route"}


def _hex(address: str, port: int) -> str:
    return f"{int(ipaddress.IPv4Address(address)):08X}:{port:04X}"


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
