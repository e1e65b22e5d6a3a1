"""What the IPVS backend puts on a host, as plain data: the compiler builds it, the template
prints it, `apply` diffs it against the kernel.

Spellings follow `ipvsadm-save -n` (Debian ipvsadm 1.31, checked in the VM tests), so the
compiled text and what the kernel reads back compare line for line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# IP_VS_SVC_F_* (include/uapi/linux/ip_vs.h)
FLAG_PERSISTENT = 0x0001
FLAG_HASHED = 0x0002  # set by the kernel on every service; never ours to compare
SCHED_FLAG_BITS = {"sh-fallback": 0x0008, "sh-port": 0x0010, "mh-fallback": 0x0008, "mh-port": 0x0010}
SCHED_FLAG_MASK = 0x0008 | 0x0010 | 0x0020
MANAGED_FLAG_MASK = FLAG_PERSISTENT | SCHED_FLAG_MASK

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
_PROTOCOL_OPTION = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}


@dataclass(frozen=True, slots=True, order=True)
class RealServer:
    """A destination of a virtual server; always masqueraded (`-m`), like kube-proxy's."""

    address: str
    port: int
    weight: int = 1

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class VirtualServer:
    protocol: str  # tcp | udp | sctp
    address: str
    port: int
    scheduler: str
    persistence: int = 0  # `-p` seconds (sessionAffinity ClientIP); 0 = not persistent
    sched_flags: tuple[str, ...] = ()  # `-b`, as ipvsadm-save prints them (sorted)
    real_servers: tuple[RealServer, ...] = ()
    service: str = field(default="", compare=False)  # ns/svc:port, for messages
    kind: str = field(default="", compare=False)  # ClusterIP, ExternalIP, LoadBalancer, NodePort

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.address, self.port)

    @property
    def target(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{_PROTOCOL_OPTION[self.protocol]} {host}:{self.port}"

    @property
    def flags(self) -> int:
        """The IP_VS_SVC_F_* bits we manage (persistence and scheduler flags)."""
        bits = FLAG_PERSISTENT if self.persistence else 0
        for name in self.sched_flags:
            bits |= SCHED_FLAG_BITS[name]
        return bits

    def service_line(self) -> str:
        """`ipvsadm -R` / `ipvsadm-save -n` spelling of the virtual server."""
        line = f"-A {self.target} -s {self.scheduler}"
        if self.persistence:
            line += f" -p {self.persistence}"
        if self.sched_flags:
            line += f" -b {','.join(self.sched_flags)}"
        return line

    def real_server_line(self, rs: RealServer) -> str:
        return f"-a {self.target} -r {rs.endpoint} -m -w {rs.weight}"

    def same_settings(self, other: VirtualServer) -> bool:
        """Everything `ipvsadm -E` can change in place (the key and the real servers aside)."""
        return (self.scheduler, self.persistence, self.sched_flags) == (
            other.scheduler,
            other.persistence,
            other.sched_flags,
        )

    def without_real_servers(self) -> VirtualServer:
        return VirtualServer(
            self.protocol,
            self.address,
            self.port,
            self.scheduler,
            self.persistence,
            self.sched_flags,
            (),
            self.service,
            self.kind,
        )


def sched_flag_names(scheduler: str, flags: int) -> tuple[str, ...]:
    """The `-b` names of a kernel flags word, for the scheduler that interprets them."""
    if scheduler not in ("sh", "mh"):
        return ()
    names = [f"{scheduler}-fallback", f"{scheduler}-port"]
    return tuple(sorted(n for n in names if flags & SCHED_FLAG_BITS[n]))


@dataclass(frozen=True, slots=True)
class IpSet:
    """One `ipset` set with its entries, in `ipset save` spelling."""

    name: str
    kind: str  # hash:ip,port etc.
    options: str  # what follows the type on the `create` line (family, range)
    comment: str  # what the set is for (kube-proxy's set comment)
    entries: tuple[str, ...] = ()

    def create_line(self) -> str:
        return f"create {self.name} {self.kind} {self.options}".rstrip()


@dataclass(frozen=True, slots=True)
class IpvsRuleset:
    """Everything of kube-proxy's IPVS mode for one node, in plan order."""

    dummy_interface: str
    virtual_servers: tuple[VirtualServer, ...]
    bind_addresses: tuple[str, ...]  # on the dummy interface, /32
    ipsets: tuple[IpSet, ...]
    iptables: str  # the iptables-restore payload (filter and nat), without the apply marker
    tables: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> chain -> rules
    jumps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> [(chain, spec)]
    warnings: tuple[str, ...] = ()
