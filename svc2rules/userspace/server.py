"""The proxy's listeners, kept in line with a layout: opened, retargeted, closed, drained.

Reloading never touches an established connection: a kept listener only gets a new route
(the endpoints new connections will use), and a removed listener only stops accepting.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.layout import Layout, Listener, Pool
from svc2rules.ir import Protocol
from svc2rules.userspace.balancer import AffinityTable, Balancer, Balancing, HoldDown
from svc2rules.userspace.conntable import Connections
from svc2rules.userspace.tcp import Route, TcpListener
from svc2rules.userspace.udp import DEFAULT_IDLE_TIMEOUT, UdpListener, enable_pktinfo

log = logging.getLogger("svc2rules.proxy")

Key = tuple[Protocol, int]


@dataclass(frozen=True, slots=True)
class ProxySettings:
    addressing: Addressing
    balancing: Balancing = Balancing.ROUND_ROBIN
    udp_timeout: float = DEFAULT_IDLE_TIMEOUT
    grace_period: float = 30.0


@dataclass
class Changes:
    opened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "name: why" for listeners that could not open

    def summary(self) -> str:
        return (
            f"{len(self.opened)} opened, {len(self.updated)} with new endpoints, "
            f"{len(self.closed)} closed, {len(self.failed)} failed"
        )


def listen_socket(protocol: Protocol, address: str, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if protocol is Protocol.TCP else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        # A restarted proxy must get its ports back while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if protocol is Protocol.UDP:
            enable_pktinfo(sock)
        sock.bind((address, port))
        if protocol is Protocol.TCP:
            sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def route_name(listener: Listener) -> str:
    suffix = "/local" if listener.pool is Pool.LOCAL else ""
    return f"{listener.name}/{listener.protocol.keyword}{suffix}"


class Proxy:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.connections = Connections()
        self.hold_down = HoldDown(time.monotonic)
        self.listeners: dict[Key, TcpListener | UdpListener] = {}
        self.names: dict[Key, str] = {}
        self.affinity: dict[str, AffinityTable] = {}
        self.draining = False

    @property
    def ports(self) -> dict[Key, str]:
        return dict(self.names)

    async def open(self, layout: Layout) -> Changes:
        """Open the layout's new listeners and give kept ones their new endpoints."""
        changes = Changes()
        self._update_affinity(layout)
        for listener in layout:
            key = (listener.protocol, listener.port)
            name = route_name(listener)
            current = self.listeners.get(key)
            if current is not None:
                if self._retarget(current, listener):
                    changes.updated.append(name)
                self.names[key] = name
                continue
            try:
                sock = listen_socket(listener.protocol, self.settings.addressing.bind, listener.port)
            except OSError as exc:
                changes.failed.append(f"{name} on port {listener.port}: {exc.strerror or exc}")
                continue
            route = self._route(listener)
            new: TcpListener | UdpListener
            if listener.protocol is Protocol.TCP:
                new = TcpListener(sock, route, self.connections)
            else:
                new = UdpListener(sock, route, self.connections, self.settings.udp_timeout)
            await new.start()
            self.listeners[key] = new
            self.names[key] = name
            changes.opened.append(name)
        return changes

    def close_stale(self, layout: Layout, changes: Changes) -> None:
        """Close the listeners the layout no longer has (their relayed TCP connections stay)."""
        wanted = {(listener.protocol, listener.port) for listener in layout}
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).close()
            changes.closed.append(self.names.pop(key))

    def _update_affinity(self, layout: Layout) -> None:
        groups: dict[str, int] = {}
        for listener in layout:
            timeout = listener.service_port.affinity_timeout
            if timeout:
                groups[listener.affinity_group] = timeout
        for group in [g for g in self.affinity if g not in groups]:
            del self.affinity[group]
        for group, timeout in groups.items():
            table = self.affinity.get(group)
            if table is None:
                self.affinity[group] = AffinityTable(float(timeout), time.monotonic)
            else:
                table.timeout = float(timeout)
                table.expire()

    def _route(self, listener: Listener) -> Route:
        balancer = Balancer(
            [ep.address for ep in listener.endpoints],
            mode=self.settings.balancing,
            affinity=self.affinity.get(listener.affinity_group),
            hold_down=self.hold_down,
        )
        return Route(route_name(listener), balancer)

    def _retarget(self, current: TcpListener | UdpListener, listener: Listener) -> bool:
        """Replace the route when the endpoints or the affinity changed (keeping the
        round-robin position otherwise); True when it changed."""
        old = current.route.balancer
        new_endpoints = tuple(ep.address for ep in listener.endpoints)
        affinity = self.affinity.get(listener.affinity_group)
        if (
            old.endpoints == new_endpoints
            and old.affinity is affinity
            and current.route.name == route_name(listener)
        ):
            return False
        current.route = self._route(listener)
        return True

    async def drain(self, grace_period: float) -> int:
        """Stop accepting, wait for open connections up to the grace period, then cut the
        rest; returns how many were cut."""
        self.draining = True
        for listener in self.listeners.values():
            if isinstance(listener, TcpListener):
                listener.close()
            else:
                listener.stop_accepting()
        open_now = len(self.connections)
        if open_now:
            log.info("draining %d open connection(s), for at most %gs", open_now, grace_period)
        await self.connections.wait_empty(grace_period)
        cut = len(self.connections)
        self.connections.abort_all()
        for listener in self.listeners.values():
            if isinstance(listener, UdpListener):
                listener.close()
        self.listeners.clear()
        self.names.clear()
        return cut
