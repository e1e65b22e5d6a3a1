"""ipset: typed sets, the one writer of `ipset restore` input and the one reader of `ipset save`
(and `ipset list`) output. Knows nothing of Services.

    IpSet / SetOptions / Entry     a set as a renderer builds it or a reader reads it
    Create, Add, Delete, Flush,    the commands of one `ipset restore` batch (Note: a `#` line,
    Destroy, Swap, Note            which restore skips)
    write(commands)                the restore input
    read_save(text)                `ipset save` / `ipset list -o save` -> sets by name
    read_list(text)                plain `ipset list` -> sets by name

Spellings follow `ipset save` (ipset 7.x): options in the order it prints them (the ones it
adds itself, `bucketsize` and `initval`, are kept as they were read), an element in its
canonical form (a host CIDR without its prefix length), a comment in double quotes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field

from svc2rules.family import IPFamily

# `family inet|inet6` of the hash types (bitmap:port has none): the one per-family spelling.
FAMILY_SPELLING: dict[IPFamily, str] = {IPFamily.IPv4: "inet", IPFamily.IPv6: "inet6"}
_FAMILY_OF = {word: family for family, word in FAMILY_SPELLING.items()}
# The tool's invocations: `-exist` makes create/add of what exists, and del of what does not, no error.
RESTORE_ARGV = ("ipset", "restore", "-exist")
SAVE_ARGV = ("ipset", "save")
LIST_ARGV = ("ipset", "list")
# IPSET_MAXNAMELEN (32) including the terminating NUL; a comment's IPSET_MAX_COMMENT_SIZE.
NAME_MAX = 31
COMMENT_MAX = 255


@dataclass(frozen=True, slots=True)
class SetOptions:
    """What follows the type on a `create` line."""

    family: IPFamily | None = None  # hash types only
    hashsize: int | None = None
    maxelem: int | None = None
    range: str | None = None  # bitmap types: `0-65535`
    comment: bool = False  # entries may carry a comment
    # What a reader found beyond these (bucketsize, initval, timeout, counters...), in order.
    other: tuple[str, ...] = ()

    def words(self) -> list[str]:
        out: list[str] = []
        if self.family is not None:
            out += ["family", FAMILY_SPELLING[self.family]]
        if self.hashsize is not None:
            out += ["hashsize", str(self.hashsize)]
        if self.maxelem is not None:
            out += ["maxelem", str(self.maxelem)]
        if self.range is not None:
            out += ["range", self.range]
        if self.comment:
            out.append("comment")
        return [*out, *self.other]


@dataclass(frozen=True, slots=True)
class Entry:
    """One member: the element as `ipset save` prints it (`172.30.0.10,tcp:80`, `30080`,
    `fd00::1,udp:53,fd00:10::/64`) and its comment."""

    element: str
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class IpSet:
    name: str
    type: str  # hash:ip,port, bitmap:port...
    options: SetOptions = SetOptions()
    entries: tuple[Entry, ...] = ()
    # What the set is for, for a reader of the restore input (a `Note`); never in the kernel.
    description: str = field(default="", compare=False)

    def definition(self) -> IpSet:
        """The set without its entries."""
        return IpSet(self.name, self.type, self.options, (), self.description)


# -- the commands of one `ipset restore` batch ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Creates the set (its entries are not part of it: add them with `Add`)."""

    set: IpSet

    def line(self) -> str:
        return " ".join(["create", self.set.name, self.set.type, *self.set.options.words()])


@dataclass(frozen=True, slots=True)
class Add:
    set: str
    entry: Entry

    def line(self) -> str:
        line = f"add {self.set} {self.entry.element}"
        text = self.entry.comment
        if text is None:
            return line
        if '"' in text or "\n" in text or len(text) > COMMENT_MAX:
            raise ValueError(f"ipset comment cannot be written: {text!r}")
        return f'{line} comment "{text}"'


@dataclass(frozen=True, slots=True)
class Delete:
    set: str
    element: str

    def line(self) -> str:
        return f"del {self.set} {self.element}"


@dataclass(frozen=True, slots=True)
class Flush:
    set: str

    def line(self) -> str:
        return f"flush {self.set}"


@dataclass(frozen=True, slots=True)
class Destroy:
    set: str

    def line(self) -> str:
        return f"destroy {self.set}"


@dataclass(frozen=True, slots=True)
class Swap:
    first: str
    second: str

    def line(self) -> str:
        return f"swap {self.first} {self.second}"


@dataclass(frozen=True, slots=True)
class Note:
    """A `#` line: restore skips it; it tells a reader what follows."""

    text: str

    def line(self) -> str:
        return f"# {self.text}"


Command = Create | Add | Delete | Flush | Destroy | Swap | Note


def write(commands: Iterable[Command]) -> str:
    """The `ipset restore` input for `commands`, in order."""
    return "".join(command.line() + "\n" for command in commands)


def ip_port(address: str, protocol: str, port: int) -> str:
    """The element of a `hash:ip,port` set."""
    return f"{address},{protocol}:{port}"


def ip_port_ip(address: str, protocol: str, port: int, other: str) -> str:
    """The element of a `hash:ip,port,ip` set."""
    return f"{ip_port(address, protocol, port)},{other}"


def ip_port_net(address: str, protocol: str, port: int, cidr: str) -> str:
    """The element of a `hash:ip,port,net` set; a host CIDR is written as its address alone,
    as `ipset save` prints it."""
    network = ipaddress.ip_network(cidr, strict=False)
    net = str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
    return f"{ip_port(address, protocol, port)},{net}"


def read_ip_port(element: str) -> tuple[str, str, int] | None:
    """(address, protocol, port) of a `hash:ip,port` element, or None if it is not one."""
    address, _, rest = element.partition(",")
    protocol, _, port = rest.partition(":")
    return (address, protocol, int(port)) if port.isdigit() else None


def filled(ipset: IpSet) -> list[Command]:
    """The set created with its entries."""
    return [Create(ipset.definition()), *(Add(ipset.name, entry) for entry in ipset.entries)]


# -- reading ----------------------------------------------------------------------------------


def read_options(words: Iterable[str]) -> SetOptions:
    family: IPFamily | None = None
    hashsize = maxelem = None
    range_: str | None = None
    comment = False
    other: list[str] = []
    it = iter(words)
    for word in it:
        if word == "family":
            family = _FAMILY_OF[next(it)]
        elif word == "hashsize":
            hashsize = int(next(it))
        elif word == "maxelem":
            maxelem = int(next(it))
        elif word == "range":
            range_ = next(it)
        elif word == "comment":
            comment = True
        else:
            other.append(word)
    return SetOptions(family, hashsize, maxelem, range_, comment, tuple(other))


def read_entry(text: str) -> Entry:
    """A member as `ipset save` prints it after the set name (`ELEMENT [comment "TEXT"] ...`)."""
    element, _, rest = text.strip().partition(" ")
    head, found, tail = rest.partition('comment "')
    if found and not head.strip():
        return Entry(element, tail.partition('"')[0])
    return Entry(element)


def read_save(text: str, names: Container[str] | None = None) -> dict[str, IpSet]:
    """The sets of `ipset save` output (only those in `names`, when given), entries in order."""
    created: dict[str, tuple[str, SetOptions]] = {}
    entries: dict[str, list[Entry]] = {}
    for line in text.splitlines():
        command, _, rest = line.partition(" ")
        name, _, rest = rest.partition(" ")
        if names is not None and name not in names:
            continue
        if command == "create":
            kind, _, options = rest.partition(" ")
            created[name] = (kind, read_options(options.split()))
        elif command == "add":
            entries.setdefault(name, []).append(read_entry(rest))
    return {
        name: IpSet(name, kind, options, tuple(entries.get(name, ())))
        for name, (kind, options) in created.items()
    }


def read_list(text: str, names: Container[str] | None = None) -> dict[str, IpSet]:
    """The sets of plain `ipset list` output (`Name:`, `Type:`, `Header:`, `Members:` blocks)."""
    out: dict[str, IpSet] = {}
    for block in _blocks(text):
        name = block.get("Name", "")
        if names is not None and name not in names:
            continue
        members = tuple(read_entry(line) for line in block.get("Members", "").splitlines() if line)
        out[name] = IpSet(name, block.get("Type", ""), read_options(block.get("Header", "").split()), members)
    return out


def _blocks(text: str) -> Iterator[dict[str, str]]:
    block: dict[str, str] = {}
    in_members = False
    for line in text.splitlines():
        if line.startswith("Name: "):
            if block:
                yield block
            block, in_members = {"Name": line.removeprefix("Name: ").strip()}, False
        elif in_members:
            block["Members"] = block.get("Members", "") + line + "\n"
        elif line.startswith("Members:"):
            in_members = True
        elif ": " in line:
            key, _, value = line.partition(": ")
            block[key] = value.strip()
    if block:
        yield block
