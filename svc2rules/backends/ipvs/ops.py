"""The steps of an IPVS apply, as data: planned by `reconcile`, printed by `--dry-run`, run
(and undone, in reverse, when a later step fails) by `execute`.

Each step prints as the command a person would type for it (`ipvsadm`, `ip`, `ipset`,
`iptables-restore`), spelt by that tool's writer, so a dry run reads like a script.
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends.ipvs import sets
from svc2rules.backends.owned_chains import OwnedChains
from svc2rules.syntax import iproute, ipset, ipvsadm, xtables
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer

# Phases in execution order (see reconcile.py for why).
PREPARE, ADD, SWITCH, REMOVE, FINISH = "prepare", "add", "switch", "remove", "finish"
PHASES = (PREPARE, ADD, SWITCH, REMOVE, FINISH)
IPVSADM = "ipvsadm"


@dataclass(frozen=True, slots=True)
class LinkAdd:
    name: str
    phase: str = PREPARE

    def describe(self) -> str:
        return iproute.command_line(iproute.LinkAdd(self.name), iproute.LinkUp(self.name))


@dataclass(frozen=True, slots=True)
class LinkUp:
    name: str
    phase: str = PREPARE

    def describe(self) -> str:
        return iproute.command_line(iproute.LinkUp(self.name))


@dataclass(frozen=True, slots=True)
class LinkDel:
    name: str
    addresses: tuple[str, ...] = ()  # what it carried, to put back on an undo
    phase: str = REMOVE

    def describe(self) -> str:
        return iproute.command_line(iproute.LinkDelete(self.name))


@dataclass(frozen=True, slots=True)
class AddrAdd:
    interface: str
    address: str
    phase: str = SWITCH

    def describe(self) -> str:
        return iproute.command_line(iproute.AddressAdd(self.interface, self.address))


@dataclass(frozen=True, slots=True)
class AddrDel:
    interface: str
    address: str
    phase: str = REMOVE

    def describe(self) -> str:
        return iproute.command_line(iproute.AddressDelete(self.interface, self.address))


@dataclass(frozen=True, slots=True)
class IpsetRestore:
    """One `ipset restore -exist` batch; `undo` is the batch that takes it back."""

    commands: tuple[ipset.Command, ...]
    undo: tuple[ipset.Command, ...]
    phase: str = ADD

    def describe(self) -> str:
        return sets.describe(self.commands)


@dataclass(frozen=True, slots=True)
class IptablesRestore:
    """One `--noflush` restore of our chains (atomic per table); `undo` restores what was."""

    chains: OwnedChains
    payload: tuple[xtables.Transaction, ...]
    undo: tuple[xtables.Transaction, ...]
    what: str
    phase: str = ADD

    def describe(self) -> str:
        return self.chains.describe(self.payload, self.what)


@dataclass(frozen=True, slots=True)
class ServiceAdd:
    server: VirtualServer  # without real servers
    phase: str = ADD

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.add_service(self.server)}"


@dataclass(frozen=True, slots=True)
class ServiceEdit:
    server: VirtualServer
    before: VirtualServer
    phase: str = ADD

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.edit_service(self.server)}"


@dataclass(frozen=True, slots=True)
class ServiceDel:
    server: VirtualServer  # with its real servers, so that it can be put back
    phase: str = REMOVE

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.delete_service(self.server)}"


@dataclass(frozen=True, slots=True)
class DestAdd:
    server: VirtualServer
    real: RealServer
    phase: str = ADD

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.add_real_server(self.server, self.real)}"


@dataclass(frozen=True, slots=True)
class DestEdit:
    """A weight change: back to 1 (an endpoint returns), or 0 (it drains: no new connections)."""

    server: VirtualServer
    real: RealServer
    before: int
    phase: str = ADD

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.edit_real_server(self.server, self.real)}"


@dataclass(frozen=True, slots=True)
class DestDel:
    server: VirtualServer
    real: RealServer
    phase: str = REMOVE

    def describe(self) -> str:
        return f"{IPVSADM} {ipvsadm.delete_real_server(self.server, self.real)}"


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
