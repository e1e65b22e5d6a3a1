"""TCP: accept on a service port's listener, connect to an endpoint (retrying the next one
when a connect fails), then relay bytes both ways until both sides are done.

Relaying uses asyncio protocols with flow control (a side whose peer cannot keep up stops
reading) and half-close (a FIN from one side is passed on as a FIN, so request/response
protocols that shut down their write side keep working).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable

from svc2rules.userspace.balancer import DIAL_TIMEOUTS, Balancer, dial_timeout
from svc2rules.userspace.conntable import Connections

log = logging.getLogger("svc2rules.proxy")

# Give up on a client once the attempts together took as long as kube-proxy's would at most.
DIAL_BUDGET = sum(DIAL_TIMEOUTS)


class Route:
    """Where a listener sends new connections; replaced as a whole on reload."""

    def __init__(self, name: str, balancer: Balancer) -> None:
        self.name = name
        self.balancer = balancer


def split_address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads is written to its peer."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        if peer is not None and peer.eof:
            self.pair.close()
        return True  # keep our write side open: the peer may still be sending

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(self, exc)


class _UpstreamSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        # The endpoint may speak first; hold what it sends until the pair is linked.
        transport.pause_reading()


class _ClientSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        # Nothing is read from the client until an endpoint has accepted the connection.
        transport.pause_reading()
        self.pair.listener.connect(self.pair)


class _Pair:
    """A client connection and its upstream connection."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.client: _Side = _ClientSide(self)
        self.upstream: _Side | None = None
        self.closed = False

    def close(self) -> None:
        """Both sides finished cleanly: flush what is buffered, then close."""
        self._end(abort=False)

    def abort(self) -> None:
        self._end(abort=True)

    def _end(self, *, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None:
                if abort:
                    side.transport.abort()
                else:
                    side.transport.close()
        self.listener.connections.discard(self)
        # Break the cycles between the two sides so the pair is freed without the cyclic GC.
        if self.upstream is not None:
            self.upstream.peer = None
        self.client.peer = None

    def lost(self, side: _Side, exc: Exception | None) -> None:
        if side is not self.client and side is not self.upstream:
            return  # an attempt we gave up on (timed out late): not part of this pair
        other = self.upstream if side is self.client else self.client
        if other is None or other.transport is None:
            self._end(abort=exc is not None)
            return
        # A reset on one side is passed on as a reset; a clean close after both FINs is clean.
        self._end(abort=exc is not None or not (side.eof and other.eof))


class TcpListener:
    """A listening socket relaying to the endpoints of its current route."""

    def __init__(self, sock: socket.socket, route: Route, connections: Connections) -> None:
        self.sock = sock
        self.route = route
        self.connections = connections
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accepted, sock=self.sock, backlog=4096)

    def _accepted(self) -> asyncio.Protocol:
        pair = _Pair(self)
        self.connections.add(pair)
        return pair.client

    def connect(self, pair: _Pair) -> None:
        """Called once a client is accepted: find it an endpoint in the background."""
        task = asyncio.get_running_loop().create_task(self._connect(pair, self.route))
        self.connections.track(task)

    async def _connect(self, pair: _Pair, route: Route) -> None:
        client_transport = pair.client.transport
        assert client_transport is not None
        peer = client_transport.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        for attempt, endpoint in enumerate(route.balancer.attempts(client_ip)):
            if pair.closed:
                return
            if attempt and time.monotonic() - started > DIAL_BUDGET:
                break
            upstream = _UpstreamSide(pair)
            try:
                sock = await dial(endpoint, dial_timeout(attempt))
                await loop.create_connection(_factory(upstream), sock=sock)
            except (OSError, TimeoutError) as exc:
                route.balancer.failed(endpoint)
                log.info(
                    "%s: connect to %s failed (%s), trying the next endpoint", route.name, endpoint, _why(exc)
                )
                continue
            route.balancer.connected(client_ip, endpoint)
            if pair.closed:  # the client went away while we were connecting
                if upstream.transport is not None:
                    upstream.transport.abort()
                return
            pair.upstream = upstream
            upstream.peer, pair.client.peer = pair.client, upstream
            client_transport.resume_reading()
            if upstream.transport is not None:
                upstream.transport.resume_reading()
            return
        log.warning("%s: no endpoint accepted the connection from %s; resetting it", route.name, client_ip)
        sock = client_transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: the client gets a RST (a failed connection), not a FIN (an empty answer).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        pair.abort()

    def close(self) -> None:
        """Stop accepting; connections already relayed carry on."""
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


async def dial(endpoint: str, timeout: float) -> socket.socket:
    """A connected socket, or OSError/TimeoutError.

    The timeout is judged by the kernel, not by the event loop: when the timer fires, a
    handshake that completed meanwhile still counts. A busy loop (hundreds of clients at once)
    may run the timer before it notices the connect finished; without this check every
    endpoint would look dead under load and each client would retry all of them.
    """
    host, port = split_address(endpoint)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        except TimeoutError:
            if not _established(sock):
                raise
    except BaseException:
        sock.close()
        raise
    return sock


def _established(sock: socket.socket) -> bool:
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
        return False
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN: the SYN is still unanswered
        return False
    return True


def _factory(side: _Side) -> Callable[[], _Side]:
    return lambda: side


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
