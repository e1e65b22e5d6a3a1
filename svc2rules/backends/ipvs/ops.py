"""The steps of an IPVS apply, as data: planned by `reconcile`, printed by `--dry-run`, run
(and undone, in reverse, when a later step fails) by `execute`.

Each step prints as the command a person would type for it (`ipvsadm`, `ip`, `ipset`,
`iptables-restore`), so a dry run reads like a script.
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends.ipvs.model import RealServer, VirtualServer

# Phases in execution order (see reconcile.py for why).
PREPARE, ADD, SWITCH, REMOVE, FINISH = "prepare", "add", "switch", "remove", "finish"
PHASES = (PREPARE, ADD, SWITCH, REMOVE, FINISH)


@dataclass(frozen=True, slots=True)
class LinkAdd:
    name: str
    phase: str = PREPARE

    def describe(self) -> str:
        return f"ip link add {self.name} type dummy && ip link set {self.name} up"


@dataclass(frozen=True, slots=True)
class LinkUp:
    name: str
    phase: str = PREPARE

    def describe(self) -> str:
        return f"ip link set {self.name} up"


@dataclass(frozen=True, slots=True)
class LinkDel:
    name: str
    addresses: tuple[str, ...] = ()  # what it carried, to put back on an undo
    phase: str = REMOVE

    def describe(self) -> str:
        return f"ip link del {self.name}"


@dataclass(frozen=True, slots=True)
class AddrAdd:
    interface: str
    address: str
    phase: str = SWITCH

    def describe(self) -> str:
        return f"ip address add {self.address}/32 dev {self.interface}"


@dataclass(frozen=True, slots=True)
class AddrDel:
    interface: str
    address: str
    phase: str = REMOVE

    def describe(self) -> str:
        return f"ip address del {self.address}/32 dev {self.interface}"


@dataclass(frozen=True, slots=True)
class IpsetRestore:
    """One `ipset restore -exist` batch; `undo` is the batch that takes it back."""

    lines: tuple[str, ...]
    undo: tuple[str, ...]
    phase: str = ADD

    def describe(self) -> str:
        return "ipset restore -exist <<EOF\n" + "\n".join(self.lines) + "\nEOF"


@dataclass(frozen=True, slots=True)
class IptablesRestore:
    """One `iptables-restore --noflush` payload (atomic per table); `undo` restores what was."""

    payload: str
    undo: str
    what: str
    phase: str = ADD

    def describe(self) -> str:
        return f"iptables-restore -w --noflush <<EOF   # {self.what}\n{self.payload.rstrip()}\nEOF"


@dataclass(frozen=True, slots=True)
class ServiceAdd:
    server: VirtualServer  # without real servers
    phase: str = ADD

    def describe(self) -> str:
        return f"ipvsadm {self.server.service_line()}"


@dataclass(frozen=True, slots=True)
class ServiceEdit:
    server: VirtualServer
    before: VirtualServer
    phase: str = ADD

    def describe(self) -> str:
        return "ipvsadm " + self.server.service_line().replace("-A ", "-E ", 1)


@dataclass(frozen=True, slots=True)
class ServiceDel:
    server: VirtualServer  # with its real servers, so that it can be put back
    phase: str = REMOVE

    def describe(self) -> str:
        return f"ipvsadm -D {self.server.target}"


@dataclass(frozen=True, slots=True)
class DestAdd:
    server: VirtualServer
    real: RealServer
    phase: str = ADD

    def describe(self) -> str:
        return f"ipvsadm {self.server.real_server_line(self.real)}"


@dataclass(frozen=True, slots=True)
class DestEdit:
    """A weight change: back to 1 (an endpoint returns), or 0 (it drains: no new connections)."""

    server: VirtualServer
    real: RealServer
    before: int
    phase: str = ADD

    def describe(self) -> str:
        return "ipvsadm " + self.server.real_server_line(self.real).replace("-a ", "-e ", 1)


@dataclass(frozen=True, slots=True)
class DestDel:
    server: VirtualServer
    real: RealServer
    phase: str = REMOVE

    def describe(self) -> str:
        return f"ipvsadm -d {self.server.target} -r {self.real.endpoint}"


Op = (
    LinkAdd
    | LinkUp
    | LinkDel
    | AddrAdd
    | AddrDel
    | IpsetRestore
    | IptablesRestore
    | ServiceAdd
    | ServiceEdit
    | ServiceDel
    | DestAdd
    | DestEdit
    | DestDel
)


def in_order(ops: list[Op]) -> list[Op]:
    """Stable sort by phase: within a phase, the planner's order stands."""
    rank = {phase: i for i, phase in enumerate(PHASES)}
    return sorted(ops, key=lambda op: rank[op.phase])
