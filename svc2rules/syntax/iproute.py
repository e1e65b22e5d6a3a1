"""iproute2's `ip`: the commands of an `ip -batch` input (a dummy interface and host
addresses on it), their one writer, and the one reader of `ip -o address show`. Knows nothing
of Services.

An address goes on an interface as a host route: its prefix length is the family's
(`IPFamily.host_prefix`, /32 or /128).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from svc2rules.family import IPFamily

COMMAND = "ip"
# Reads commands from stdin; -force goes on after an error and reports it in the exit status.
BATCH_ARGV = (COMMAND, "-force", "-batch", "-")


@dataclass(frozen=True, slots=True)
class LinkAdd:
    name: str
    kind: str = "dummy"

    def line(self) -> str:
        return f"link add {self.name} type {self.kind}"


@dataclass(frozen=True, slots=True)
class LinkUp:
    name: str

    def line(self) -> str:
        return f"link set {self.name} up"


@dataclass(frozen=True, slots=True)
class LinkDelete:
    name: str

    def line(self) -> str:
        return f"link del {self.name}"


def host_address(address: str) -> str:
    """`ADDR/PREFIX` for a single address of its family."""
    return f"{address}/{IPFamily.of(address).host_prefix}"


@dataclass(frozen=True, slots=True)
class AddressAdd:
    interface: str
    address: str  # one host address; written with its family's host prefix

    def line(self) -> str:
        return f"address add {host_address(self.address)} dev {self.interface}"


@dataclass(frozen=True, slots=True)
class AddressDelete:
    interface: str
    address: str

    def line(self) -> str:
        return f"address del {host_address(self.address)} dev {self.interface}"


Command = LinkAdd | LinkUp | LinkDelete | AddressAdd | AddressDelete


def write(commands: Iterable[Command]) -> str:
    """`ip -batch` input for `commands`, in order."""
    return "".join(command.line() + "\n" for command in commands)


def command_line(*commands: Command) -> str:
    """The commands as a person types them (`ip link set X up && ...`)."""
    return " && ".join(f"{COMMAND} {command.line()}" for command in commands)


def show_addresses_argv(interface: str, family: IPFamily) -> list[str]:
    """One line per address of `family` on `interface`."""
    return [COMMAND, family.iproute_flag, "-o", "address", "show", "dev", interface]


def read_addresses(text: str) -> list[str]:
    """The addresses (without prefix length) of `ip -o address show` output:
    `7: dev    inet 172.30.0.10/32 scope global dev\\       valid_lft ...`."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) > 3:
            out.append(words[3].partition("/")[0])
    return out
