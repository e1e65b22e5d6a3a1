"""Listeners that answer with who they are: pods (endpoints), the sink and the node itself.

They run in-process on one background asyncio loop; only their sockets live in the lab's
namespaces (created by a :class:`~.netns.NetnsWorker`). Every answer is one JSON line::

    {"role": "pod", "proto": "tcp", "local": "10.180.0.1:8080", "peer": "203.0.113.1:61000"}

``local`` is the address that received the packet, i.e. after any DNAT; ``peer`` is the source
as the listener saw it, i.e. after any SNAT/masquerade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from .netns import NetnsWorker

T = TypeVar("T")
Role = Literal["pod", "sink", "node"]
Proto = Literal["tcp", "udp"]

# Not exported by Python's socket module on Linux, values from <linux/in.h>.
IP_PKTINFO = 8
IP_TRANSPARENT = 19
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: like SO_RCVBUF, past net.core.rmem_max (root)
# Hundreds of probe datagrams can arrive while the reactor thread waits for the CPU (a busy host):
# the default receive buffer (~200 KiB, a few hundred small datagrams) would overflow and drop some.
UDP_RCVBUF = 8 << 20
_PKTINFO = struct.Struct("i4s4s")  # struct in_pktinfo { ifindex; spec_dst; addr; }


def encode_answer(role: Role, proto: Proto, local: tuple[str, int], peer: tuple[str, int]) -> bytes:
    body = {"role": role, "proto": proto, "local": f"{local[0]}:{local[1]}", "peer": f"{peer[0]}:{peer[1]}"}
    return json.dumps(body).encode() + b"\n"


class Reactor:
    """One process-wide event loop thread serving every lab listener."""

    _instance: Reactor | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="s2r-lab-reactor", daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> Reactor:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Bounds a hang, not a speed: a busy host may take a while to serve the loop thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def _make_listen_socket(proto: Proto, port: int, transparent: bool) -> socket.socket:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if transparent:
            # The sink answers for addresses it does not own (AnyIP route); without IP_TRANSPARENT
            # the kernel refuses to send a SYN-ACK / reply from such a source.
            sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        if proto == "udp":
            # Bound to 0.0.0.0, a UDP socket must learn which address was hit and reply from it, or
            # conntrack cannot match the reply to the DNATed flow.
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RCVBUF)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        sock.bind(("0.0.0.0", port))
        if proto == "tcp":
            sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _UdpResponder:
    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, role: Role) -> None:
        self.sock, self.role, self.loop = sock, role, loop
        self.port = sock.getsockname()[1]
        loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        while True:
            try:
                _data, ancdata, _flags, peer = self.sock.recvmsg(2048, socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. a queued ICMP error for an earlier reply; keep serving
            hit = "0.0.0.0"
            for level, ctype, cdata in ancdata:
                if level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                    hit = socket.inet_ntoa(_PKTINFO.unpack(cdata[: _PKTINFO.size])[2])
            answer = encode_answer(self.role, "udp", (hit, self.port), (peer[0], peer[1]))
            pktinfo = _PKTINFO.pack(0, socket.inet_aton(hit), b"\0" * 4)
            with contextlib.suppress(OSError):
                self.sock.sendmsg([answer], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, peer)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class Listeners:
    """The listeners of one namespace with one role; idempotent per (proto, port)."""

    def __init__(self, worker: NetnsWorker, role: Role, *, anyip: bool = False) -> None:
        self.worker, self.role, self.anyip = worker, role, anyip
        self.reactor = Reactor.get()
        self._tcp: dict[int, asyncio.Server] = {}
        self._udp: dict[int, _UdpResponder] = {}

    def ensure(self, ports: set[int]) -> None:
        new_tcp = sorted(p for p in ports if p not in self._tcp)
        new_udp = sorted(p for p in ports if p not in self._udp)
        if not new_tcp and not new_udp:
            return
        socks = self.worker.call(self._make_all, new_tcp, new_udp)
        self.reactor.run(self._serve(socks))

    def _make_all(self, tcp: list[int], udp: list[int]) -> list[tuple[Proto, socket.socket]]:
        made: list[tuple[Proto, socket.socket]] = []
        try:
            for port in tcp:
                made.append(("tcp", _make_listen_socket("tcp", port, self.anyip)))
            for port in udp:
                made.append(("udp", _make_listen_socket("udp", port, self.anyip)))
        except BaseException:
            for _, s in made:
                s.close()
            raise
        return made

    async def _serve(self, socks: list[tuple[Proto, socket.socket]]) -> None:
        loop = asyncio.get_running_loop()
        for proto, sock in socks:
            port = sock.getsockname()[1]
            if proto == "tcp":
                self._tcp[port] = await asyncio.start_server(self._handle_tcp, sock=sock, backlog=4096)
            else:
                self._udp[port] = _UdpResponder(loop, sock, self.role)

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            local = writer.get_extra_info("sockname")
            peer = writer.get_extra_info("peername")
            writer.write(encode_answer(self.role, "tcp", (local[0], local[1]), (peer[0], peer[1])))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.reactor.run(self._close())

    async def _close(self) -> None:
        for server in self._tcp.values():
            server.close()
        for udp in self._udp.values():
            udp.close()
        for server in self._tcp.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._tcp.clear()
        self._udp.clear()
