"""The netlink side of the IPVS applier: IPVS virtual/real servers and our dummy interface,
through pyroute2 (imported on first use, so compiling never needs it).

pyroute2 0.9.7 facts this relies on (checked in the VM tests):
* `ipvs.service("update", ...)` sends IPVS_CMD_DEL_SERVICE: in-place changes use "set".
* `IPVSService/IPVSDest.from_message()` do not map timeout, flags and the forwarding method
  back to short keys: the raw IPVS_*_ATTR_* attributes are read instead.
* IPVSDest defaults to direct routing (fwd_method 3); kube-proxy's real servers are
  masqueraded (0).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svc2rules.backends.ipvs import proctable
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.syntax import ipvsadm
from svc2rules.syntax.iproute import host_address
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer

FWD_MASQ = 0
IFF_UP = 0x1
_FLAGS_MASK = 0xFFFF
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
# IP_VS_SVC_F_* (include/uapi/linux/ip_vs.h)
FLAG_PERSISTENT = 0x0001
FLAG_HASHED = 0x0002  # set by the kernel on every service; never ours to compare
SCHED_FLAG_BITS = {"sh-fallback": 0x0008, "sh-port": 0x0010, "mh-fallback": 0x0008, "mh-port": 0x0010}
SCHED_FLAG_MASK = 0x0008 | 0x0010 | 0x0020
MANAGED_FLAG_MASK = FLAG_PERSISTENT | SCHED_FLAG_MASK


def service_flags(vs: VirtualServer) -> int:
    """The IP_VS_SVC_F_* bits we manage (persistence and scheduler flags)."""
    bits = FLAG_PERSISTENT if vs.persistence else 0
    for name in vs.sched_flags:
        bits |= SCHED_FLAG_BITS[name]
    return bits


def sched_flag_names(scheduler: str, flags: int) -> tuple[str, ...]:
    """The `-b` names of a kernel flags word, for the scheduler that interprets them."""
    if scheduler not in ("sh", "mh"):
        return ()
    names = [f"{scheduler}-fallback", f"{scheduler}-port"]
    return tuple(sorted(n for n in names if flags & SCHED_FLAG_BITS[n]))


@dataclass(frozen=True, slots=True)
class LiveService:
    """A virtual server as the kernel has it, with its real servers' connection counts."""

    server: VirtualServer
    connections: dict[tuple[str, int], int] = field(default_factory=dict)  # active + inactive
    forward_methods: dict[tuple[str, int], int] = field(default_factory=dict)


class NetlinkFailure(ApplyError):
    """A netlink request the kernel refused."""


def _errno_text(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return f"{os.strerror(code)} (errno {code})"
    return str(exc) or type(exc).__name__


class Kernel:
    """IPVS and rtnetlink sockets of the calling thread's network namespace, for one family."""

    def __init__(self, family: IPFamily = IPFamily.IPv4) -> None:
        self.family = family
        self._ipvs: Any = None
        self._ipr: Any = None
        self.writes = 0  # netlink requests that change something, for reports and tests

    # -- sockets ---------------------------------------------------------------------------

    def ipvs(self) -> Any:
        if self._ipvs is None:
            try:
                from pyroute2 import IPVS  # type: ignore[import-untyped]
            except ImportError as exc:  # pragma: no cover - a packaging error
                raise ApplyError(f"the ipvs backend needs pyroute2: {exc}") from exc
            sock = None
            try:
                # Resolves the IPVS generic netlink family (the kernel autoloads ip_vs here).
                sock = IPVS()
                list(sock.service("dump"))
            except Exception as exc:
                if sock is not None:
                    sock.close()
                raise ApplyError(
                    f"the kernel has no IPVS (IPVS generic netlink family: {_errno_text(exc)})"
                ) from exc
            self._ipvs = sock
        return self._ipvs

    def iproute(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        for sock in (self._ipvs, self._ipr):
            if sock is not None:
                sock.close()
        self._ipvs = self._ipr = None

    # -- IPVS --------------------------------------------------------------------------------

    @staticmethod
    def _service_spec(vs: VirtualServer, *, settings: bool = True) -> Any:
        from pyroute2 import IPVSService

        spec: dict[str, Any] = {
            "addr": vs.address,
            "port": vs.port,
            "protocol": PROTOCOL_NUMBERS[vs.protocol],
        }
        if settings:
            spec.update(
                sched_name=vs.scheduler,
                timeout=vs.persistence,
                flags={"flags": service_flags(vs), "mask": _FLAGS_MASK},
            )
        return IPVSService(**spec)

    @staticmethod
    def _dest_spec(rs: RealServer, *, weight: bool = True) -> Any:
        from pyroute2 import IPVSDest

        spec: dict[str, Any] = {"addr": rs.address, "port": rs.port}
        if weight:
            spec.update(fwd_method=FWD_MASQ, weight=rs.weight)
        return IPVSDest(**spec)

    def dump_services(self) -> list[VirtualServer]:
        """Every virtual server in this namespace (ours or not), without real servers."""
        out = []
        for msg in self.ipvs().service("dump"):
            attrs = msg.get("IPVS_CMD_ATTR_SERVICE")
            if attrs.get("IPVS_SVC_ATTR_FWMARK"):
                continue  # fwmark services have no address:port; never ours
            protocol = PROTOCOL_NAMES.get(attrs.get("IPVS_SVC_ATTR_PROTOCOL"))
            if protocol is None or attrs.get("IPVS_SVC_ATTR_AF") != self.family.address_family:
                continue
            scheduler = attrs.get("IPVS_SVC_ATTR_SCHED_NAME") or ""
            flags = (attrs.get("IPVS_SVC_ATTR_FLAGS") or {}).get("flags", 0) & MANAGED_FLAG_MASK
            out.append(
                VirtualServer(
                    protocol,
                    attrs.get("IPVS_SVC_ATTR_ADDR"),
                    attrs.get("IPVS_SVC_ATTR_PORT"),
                    scheduler,
                    attrs.get("IPVS_SVC_ATTR_TIMEOUT") if flags & FLAG_PERSISTENT else 0,
                    sched_flag_names(scheduler, flags),
                )
            )
        return out

    def dump_destinations(self) -> dict[tuple[str, str, int], list[proctable.Destination]] | None:
        """Every virtual server's real servers from /proc (one read), or None without it."""
        try:
            return proctable.destinations(Path(proctable.PATH).read_text(encoding="ascii"))
        except OSError:
            return None

    @staticmethod
    def live_service(vs: VirtualServer, found: list[proctable.Destination]) -> LiveService:
        servers = tuple(sorted(RealServer(d.address, d.port, d.weight) for d in found))
        return LiveService(
            vs.with_real_servers(servers),
            {(d.address, d.port): d.connections for d in found},
            {(d.address, d.port): d.forward_method for d in found},
        )

    def dump_real_servers(self, vs: VirtualServer) -> LiveService:
        servers = []
        conns: dict[tuple[str, int], int] = {}
        methods: dict[tuple[str, int], int] = {}
        for msg in self.ipvs().dest("dump", service=self._service_spec(vs, settings=False)):
            attrs = msg.get("IPVS_CMD_ATTR_DEST")
            address, port = attrs.get("IPVS_DEST_ATTR_ADDR"), attrs.get("IPVS_DEST_ATTR_PORT")
            servers.append(RealServer(address, port, attrs.get("IPVS_DEST_ATTR_WEIGHT")))
            conns[(address, port)] = (attrs.get("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0) + (
                attrs.get("IPVS_DEST_ATTR_INACT_CONNS") or 0
            )
            methods[(address, port)] = attrs.get("IPVS_DEST_ATTR_FWD_METHOD")
        return LiveService(vs.with_real_servers(tuple(sorted(servers))), conns, methods)

    def _request(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception as exc:
            raise NetlinkFailure(f"{what}: {_errno_text(exc)}") from exc
        self.writes += 1

    def _service_request(self, what: str, command: str, vs: VirtualServer) -> None:
        try:
            self._request(what, self.ipvs().service, command, service=self._service_spec(vs))
        except NetlinkFailure as exc:
            if getattr(exc.__cause__, "code", None) == errno.ENOENT:
                # What the kernel answers when it cannot load the scheduler's module.
                raise NetlinkFailure(
                    f"{exc} (is the scheduler module ip_vs_{vs.scheduler} available?)"
                ) from exc
            raise

    def service_add(self, vs: VirtualServer) -> None:
        self._service_request(f"adding {ipvsadm.add_service(vs)}", "add", vs)

    def service_set(self, vs: VirtualServer) -> None:
        self._service_request(f"changing {ipvsadm.add_service(vs)}", "set", vs)

    def service_del(self, vs: VirtualServer) -> None:
        self._request(
            f"deleting virtual server {vs.target}",
            self.ipvs().service,
            "del",
            service=self._service_spec(vs, settings=False),
        )

    def dest_add(self, vs: VirtualServer, rs: RealServer) -> None:
        self._request(
            f"adding {ipvsadm.add_real_server(vs, rs)}",
            self.ipvs().dest,
            "add",
            service=self._service_spec(vs, settings=False),
            dest=self._dest_spec(rs),
        )

    def dest_set(self, vs: VirtualServer, rs: RealServer) -> None:
        self._request(
            f"changing {ipvsadm.add_real_server(vs, rs)}",
            self.ipvs().dest,
            "set",
            service=self._service_spec(vs, settings=False),
            dest=self._dest_spec(rs),
        )

    def dest_del(self, vs: VirtualServer, rs: RealServer) -> None:
        self._request(
            f"deleting real server {rs.endpoint} of {vs.target}",
            self.ipvs().dest,
            "del",
            service=self._service_spec(vs, settings=False),
            dest=self._dest_spec(rs, weight=False),
        )

    # -- the dummy interface ----------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        found = self.iproute().link_lookup(ifname=name)
        return int(found[0]) if found else None

    def link_is_up(self, index: int) -> bool:
        (msg,) = self.iproute().link("get", index=index)
        return bool(msg["flags"] & IFF_UP)

    def link_kind(self, index: int) -> str | None:
        (msg,) = self.iproute().link("get", index=index)
        info = msg.get("IFLA_LINKINFO")
        return info.get("IFLA_INFO_KIND") if info is not None else None

    def addresses(self, index: int) -> set[str]:
        out = set()
        for msg in self.iproute().addr("dump", index=index, family=self.family.address_family):
            if msg["index"] == index and msg["prefixlen"] == self.family.host_prefix:
                out.add(msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS"))
        return out

    def link_add_dummy(self, name: str) -> None:
        self._request(
            f"creating dummy interface {name}", self.iproute().link, "add", ifname=name, kind="dummy"
        )

    def link_up(self, name: str) -> None:
        index = self._need(name)
        self._request(f"setting {name} up", self.iproute().link, "set", index=index, state="up")

    def link_del(self, name: str) -> None:
        index = self._need(name)
        self._request(f"deleting interface {name}", self.iproute().link, "del", index=index)

    def addr_add(self, name: str, address: str) -> None:
        index = self._need(name)
        self._request(
            f"adding {host_address(address)} to {name}",
            self.iproute().addr,
            "add",
            index=index,
            address=address,
            prefixlen=self.family.host_prefix,
        )

    def addr_del(self, name: str, address: str) -> None:
        index = self._need(name)
        self._request(
            f"removing {host_address(address)} from {name}",
            self.iproute().addr,
            "del",
            index=index,
            address=address,
            prefixlen=self.family.host_prefix,
        )

    def _need(self, name: str) -> int:
        index = self.link_index(name)
        if index is None:
            raise NetlinkFailure(f"interface {name} does not exist")
        return index
