"""UDP: one association per client address, each with its own socket connected to an endpoint.

Replies are sent back through the listening socket from the exact address the client's
datagram was REDIRECTed to (IP_PKTINFO), so conntrack maps them back to the Service address
the client sent to. An association ends after `idle_timeout` without traffic either way
(kube-proxy's `--udp-timeout`). A connected UDP socket learns about an endpoint with no
listener from the ICMP port-unreachable (ECONNREFUSED); until the endpoint first answers,
the association keeps the client's datagrams and then replays them to the next endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import time

from svc2rules.userspace.conntable import Connections
from svc2rules.userspace.tcp import Route, split_address

log = logging.getLogger("svc2rules.proxy")

# Not exported by Python's socket module; from <linux/in.h>.
IP_PKTINFO = 8
_PKTINFO = struct.Struct("i4s4s")  # struct in_pktinfo { ifindex; spec_dst; addr; }
MAX_DATAGRAM = 65535
# Datagrams kept for replay while an association waits for its endpoint's first answer.
REPLAY_LIMIT = 16
DEFAULT_IDLE_TIMEOUT = 0.25  # kube-proxy's --udp-timeout default


def enable_pktinfo(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def _destination(ancdata: list[tuple[int, int, bytes]]) -> str | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return socket.inet_ntoa(_PKTINFO.unpack(data[: _PKTINFO.size])[2])
    return None


class _Association:
    """One client's flow to one endpoint."""

    def __init__(self, listener: UdpListener, client: tuple[str, int], local: str, route: Route) -> None:
        self.listener = listener
        self.client = client
        self.local = local
        self.route = route
        self.attempts = route.balancer.attempts(client[0])
        self.index = 0
        self.pending: list[bytes] = []
        self.answered = False
        self.last_active = time.monotonic()
        self.sock: socket.socket | None = None
        self.closed = False

    @property
    def endpoint(self) -> str:
        return self.attempts[self.index]

    def open(self) -> bool:
        """Connect a socket to the next endpoint to try; False when none is left."""
        loop = asyncio.get_running_loop()
        while self.index < len(self.attempts):
            host, port = split_address(self.endpoint)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect((host, port))
            except OSError as exc:
                sock.close()
                self._failed(exc)
                continue
            self.sock = sock
            self.route.balancer.remember(self.client[0], self.endpoint)
            loop.add_reader(sock.fileno(), self._from_endpoint)
            return True
        return False

    def _failed(self, exc: BaseException) -> None:
        self.route.balancer.failed(self.endpoint)
        log.info("%s: %s refused UDP from %s (%s)", self.route.name, self.endpoint, self.client[0], exc)
        self.index += 1

    def _next_endpoint(self, exc: BaseException) -> None:
        self._close_socket()
        self._failed(exc)
        if not self.open():
            log.warning(
                "%s: no endpoint took UDP from %s; dropping its datagrams", self.route.name, self.client[0]
            )
            self.close()
            return
        for datagram in self.pending:
            self._send(datagram)

    def send(self, datagram: bytes) -> None:
        self.last_active = time.monotonic()
        if not self.answered and len(self.pending) < REPLAY_LIMIT:
            self.pending.append(datagram)
        self._send(datagram)

    def _send(self, datagram: bytes) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send(datagram)
        except ConnectionRefusedError as exc:
            self._next_endpoint(exc)
        except OSError:
            pass  # a full buffer or a transient error: UDP may lose datagrams

    def _from_endpoint(self) -> None:
        while self.sock is not None:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError as exc:
                self._next_endpoint(exc)
                return
            except OSError:
                return
            self.last_active = time.monotonic()
            if not self.answered:
                self.answered = True
                self.pending.clear()
                self.route.balancer.connected(self.client[0], self.endpoint)
            self.listener.reply(self.client, self.local, data)

    def _close_socket(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_socket()
        self.listener.forget(self)

    abort = close


class UdpListener:
    def __init__(
        self,
        sock: socket.socket,
        route: Route,
        connections: Connections,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.sock = sock
        self.route = route
        self.connections = connections
        self.idle_timeout = idle_timeout
        self.associations: dict[tuple[str, int], _Association] = {}
        self.accepting = True
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._from_clients)
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        interval = min(max(self.idle_timeout / 2, 0.05), 1.0)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self.idle_timeout
        for assoc in [a for a in self.associations.values() if a.last_active < cutoff]:
            assoc.close()
        if not self._closed:
            self._schedule_sweep()

    def _from_clients(self) -> None:
        ancillary = socket.CMSG_SPACE(_PKTINFO.size)
        while not self._closed:
            try:
                data, ancdata, _flags, client = self.sock.recvmsg(MAX_DATAGRAM, ancillary)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return
                continue  # e.g. a queued ICMP error about an earlier reply
            key = (client[0], client[1])
            assoc = self.associations.get(key)
            if assoc is None:
                if not self.accepting:
                    continue
                local = _destination(ancdata) or self.sock.getsockname()[0]
                assoc = _Association(self, key, local, self.route)
                if not assoc.open():
                    log.warning("%s: no endpoint for UDP from %s", self.route.name, client[0])
                    continue
                self.associations[key] = assoc
                self.connections.add(assoc)
            assoc.send(data)

    def reply(self, client: tuple[str, int], local: str, data: bytes) -> None:
        if self._closed:
            return
        pktinfo = _PKTINFO.pack(0, socket.inet_aton(local), b"\0" * 4)
        with contextlib.suppress(OSError):
            self.sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, client)

    def forget(self, assoc: _Association) -> None:
        if self.associations.get(assoc.client) is assoc:
            del self.associations[assoc.client]
        self.connections.discard(assoc)

    def stop_accepting(self) -> None:
        """Drain: no new clients; the associations that exist keep flowing until idle."""
        self.accepting = False

    def close(self) -> None:
        """Replies go out through the listening socket, so its associations end with it."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for assoc in list(self.associations.values()):
            assoc.close()
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
