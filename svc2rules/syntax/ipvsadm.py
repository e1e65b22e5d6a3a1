"""ipvsadm: virtual and real servers, the one writer of `ipvsadm` command lines (`-R` input,
and the single commands a dry run prints) and the one reader of `ipvsadm -S -n` output.
Knows nothing of Services.

    VirtualServer / RealServer     an IPVS service (protocol, address, port) and its destinations
    add_service / edit_service / delete_service,
    add_real_server / edit_real_server / delete_real_server      one command's arguments
    write(servers)                 `ipvsadm -R` input: each service, then its real servers
    read_save(text)                `ipvsadm -S -n` -> virtual servers with their real servers

Spellings follow `ipvsadm -S -n` (ipvsadm 1.31): `-A -t ADDR:PORT -s SCHED [-p TIMEOUT]
[-b FLAGS]`, `-a -t ADDR:PORT -r ADDR:PORT -m -w WEIGHT`. An IPv6 address is written in
square brackets (`-t [fd00::1]:80`); ipvsadm's `-6` is for firewall-mark services only.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from svc2rules.family import IPFamily

# `-t` / `-u` / `--sctp-service`, as `ipvsadm -S` prints them.
PROTOCOL_OPTIONS: dict[str, str] = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}
_PROTOCOL_OF = {
    **{option: protocol for protocol, option in PROTOCOL_OPTIONS.items()},
    "--tcp-service": "tcp",
    "--udp-service": "udp",
}
# ipvsadm's persistence timeout when `-p` has none (seconds).
DEFAULT_PERSISTENCE = 300
# IPVS keeps the sysctls of both families under one tree: /proc/sys/net/ipv4/vs.
_SYSCTL_TREE: dict[IPFamily, str] = {IPFamily.IPv4: "net.ipv4.vs.", IPFamily.IPv6: "net.ipv4.vs."}


def sysctl(family: IPFamily, name: str) -> str:
    """The name of an IPVS sysctl (`conntrack`, `expire_nodest_conn`...) for a family."""
    return _SYSCTL_TREE[family] + name


class Forward(StrEnum):
    """How IPVS sends packets to a real server (`-m` masquerading is kube-proxy's choice)."""

    MASQ = "-m"
    ROUTE = "-g"
    TUNNEL = "-i"


def host_port(address: str, port: int) -> str:
    """`ADDR:PORT`, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if IPFamily.of(address) is IPFamily.IPv6 else f"{address}:{port}"


@dataclass(frozen=True, slots=True, order=True)
class RealServer:
    address: str
    port: int
    weight: int = 1
    forward: Forward = Forward.MASQ

    @property
    def endpoint(self) -> str:
        return host_port(self.address, self.port)

    def with_weight(self, weight: int) -> RealServer:
        return RealServer(self.address, self.port, weight, self.forward)


@dataclass(frozen=True, slots=True)
class VirtualServer:
    protocol: str  # tcp | udp | sctp
    address: str
    port: int
    scheduler: str
    persistence: int = 0  # `-p` seconds; 0: not persistent
    sched_flags: tuple[str, ...] = ()  # `-b`, sorted as `ipvsadm -S` prints them
    real_servers: tuple[RealServer, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.address, self.port)

    @property
    def family(self) -> IPFamily:
        return IPFamily.of(self.address)

    @property
    def target(self) -> str:
        """The arguments naming the service: `-t 172.30.0.10:80`."""
        return f"{PROTOCOL_OPTIONS[self.protocol]} {host_port(self.address, self.port)}"

    def same_settings(self, other: VirtualServer) -> bool:
        """Everything `-E` can change in place (the key and the real servers aside)."""
        return (self.scheduler, self.persistence, self.sched_flags) == (
            other.scheduler,
            other.persistence,
            other.sched_flags,
        )

    def with_real_servers(self, real_servers: tuple[RealServer, ...]) -> VirtualServer:
        return VirtualServer(
            self.protocol,
            self.address,
            self.port,
            self.scheduler,
            self.persistence,
            self.sched_flags,
            real_servers,
        )

    def without_real_servers(self) -> VirtualServer:
        return self.with_real_servers(())


# -- writing ----------------------------------------------------------------------------------


def _settings(vs: VirtualServer) -> str:
    text = f"{vs.target} -s {vs.scheduler}"
    if vs.persistence:
        text += f" -p {vs.persistence}"
    if vs.sched_flags:
        text += f" -b {','.join(vs.sched_flags)}"
    return text


def add_service(vs: VirtualServer) -> str:
    return f"-A {_settings(vs)}"


def edit_service(vs: VirtualServer) -> str:
    return f"-E {_settings(vs)}"


def delete_service(vs: VirtualServer) -> str:
    return f"-D {vs.target}"


def add_real_server(vs: VirtualServer, rs: RealServer) -> str:
    return f"-a {vs.target} -r {rs.endpoint} {rs.forward} -w {rs.weight}"


def edit_real_server(vs: VirtualServer, rs: RealServer) -> str:
    return f"-e {vs.target} -r {rs.endpoint} {rs.forward} -w {rs.weight}"


def delete_real_server(vs: VirtualServer, rs: RealServer) -> str:
    return f"-d {vs.target} -r {rs.endpoint}"


def write(servers: Iterable[VirtualServer]) -> str:
    """`ipvsadm -R` input: each virtual server, then its real servers."""
    lines: list[str] = []
    for vs in servers:
        lines.append(add_service(vs))
        lines.extend(add_real_server(vs, rs) for rs in vs.real_servers)
    return "".join(line + "\n" for line in lines)


# -- reading ----------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def read_save(text: str) -> list[VirtualServer]:
    """Virtual servers of `ipvsadm -S -n` output (firewall-mark services are skipped), each
    with its real servers in the order printed."""
    settings: dict[tuple[str, str, int], VirtualServer] = {}
    reals: dict[tuple[str, str, int], list[RealServer]] = {}
    for line in text.splitlines():
        args = shlex.split(line)
        if len(args) < 3 or args[0] not in ("-A", "-a") or args[1] not in _PROTOCOL_OF:
            continue
        protocol = _PROTOCOL_OF[args[1]]
        address, port = _address(args[2])
        key = (protocol, address, port)
        options = _options(args[3:])
        if args[0] == "-A":
            flags = tuple(sorted(options["-b"].split(","))) if "-b" in options else ()
            # A bare `-p` is ipvsadm's default persistence timeout.
            persistence = int(options["-p"] or DEFAULT_PERSISTENCE) if "-p" in options else 0
            settings[key] = VirtualServer(protocol, address, port, options.get("-s", ""), persistence, flags)
            reals.setdefault(key, [])
        elif "-r" in options:
            real_address, real_port = _address(options["-r"])
            forward = next((f for f in Forward if f.value in options), Forward.MASQ)
            weight = int(options.get("-w", "1"))
            reals.setdefault(key, []).append(RealServer(real_address, real_port, weight, forward))
    return [vs.with_real_servers(tuple(reals.get(key, ()))) for key, vs in settings.items()]


_FLAGS = {"-m", "-g", "-i", "-o", "--ops"}


def _options(args: list[str]) -> dict[str, str]:
    """Option -> its value ("" for a flag such as `-m`)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        option = args[i]
        if option in _FLAGS or i + 1 >= len(args) or args[i + 1].startswith("-"):
            out[option] = ""
            i += 1
        else:
            out[option] = args[i + 1]
            i += 2
    return out
