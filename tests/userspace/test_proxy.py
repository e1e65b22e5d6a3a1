"""The proxy with real sockets: relaying, retries, affinity, UDP, reload and drain.

Everything runs in a private network namespace (only `lo`): endpoints are listeners on
127.0.0.x, clients connect straight to the proxy's ports (the REDIRECT rules that lead there
are proven in tests/lab/test_userspace.py).
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import cast

import pytest

from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.layout import Layout, build_layout
from svc2rules.backends.userspace.ports import PortRange
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Plan, Protocol, ServicePort, ServicePortKey
from svc2rules.userspace.server import Proxy, ProxySettings
from svc2rules.userspace.tcp import dial
from tests.userspace.netns import NetnsLoop, root_only

pytestmark = root_only

RANGE = PortRange(20000, 20999)
# Bounds each wait for an answer: a hang must fail the test, but how fast a busy host answers is not
# what these tests ask (an answer ends the wait at once).
DEADLINE = 60.0
A, B, C = ("127.0.0.2", 8080), ("127.0.0.3", 8080), ("127.0.0.4", 8080)
NOBODY = ("127.0.0.5", 9)  # nothing listens: refused


def service_port(
    name: str,
    endpoints: list[tuple[str, int]],
    protocol: Protocol = Protocol.TCP,
    affinity: int | None = None,
) -> ServicePort:
    eps = tuple(Endpoint(ip, port, True, True, False, True) for ip, port in endpoints)
    return ServicePort(
        ServicePortKey("ns1", name, "p", protocol),
        IPFamily.IPv4,
        "172.30.0.1",
        80,
        affinity_timeout=affinity,
        cluster_endpoints=eps,
        reachable_endpoints=eps,
        has_endpoints=bool(eps),
    )


def layout(*ports: ServicePort) -> Layout:
    return build_layout(Plan(ProxyConfig(), ports, ()), RANGE)


def port_of(lay: Layout, name: str) -> int:
    return next(lst.port for lst in lay if lst.service_port.key.name == name)


# -- endpoints and clients (coroutines run in the namespace's loop) ---------------------------


async def ident_server(address: tuple[str, int]) -> asyncio.Server:
    """Answers every connection with `ip:port` and closes (like the lab's pods)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{address[0]}:{address[1]}\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, *address)


async def echo_server(address: tuple[str, int]) -> asyncio.Server:
    """Echoes lines prefixed with `ip:port`; on the client's FIN it says |EOF and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"|EOF")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, *address)


async def ask(port: int, src: str = "127.0.0.1") -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
    try:
        return (await asyncio.wait_for(reader.readline(), DEADLINE)).decode().strip()
    finally:
        writer.close()


class UdpIdent(asyncio.DatagramProtocol):
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Typed as the base class by asyncio's protocol API; a datagram endpoint gets a DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(f"{self.address[0]}:{self.address[1]}".encode(), addr)


async def udp_ident(address: tuple[str, int]) -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: UdpIdent(address), local_addr=address
    )
    return transport


async def udp_ask(sock: socket.socket, data: bytes = b"q") -> bytes:
    loop = asyncio.get_running_loop()
    sock.send(data)
    return await asyncio.wait_for(loop.sock_recv(sock, 4096), DEADLINE)


def udp_client(dst: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    # Connected: only a reply from exactly dst (the address the client sent to) is accepted.
    sock.connect(dst)
    return sock


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def ns() -> Iterator[NetnsLoop]:
    loop = NetnsLoop()
    yield loop
    loop.close()


def make_proxy(ns: NetnsLoop, **settings: float) -> Proxy:
    async def create() -> Proxy:
        return Proxy(ProxySettings(Addressing.create(RANGE), **settings))  # type: ignore[arg-type]

    return ns.run(create())


# -- TCP -----------------------------------------------------------------------------------------


def test_tcp_relays_both_ways_and_passes_a_half_close_on(ns: NetnsLoop) -> None:
    lay = layout(service_port("echo", [A]))
    proxy = make_proxy(ns)

    async def go() -> bytes:
        await echo_server(A)
        await proxy.open(lay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(lay, "echo"))
        payload = bytes(range(256)) * 8192  # 2 MiB: flow control on both legs
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), DEADLINE)
        writer.close()
        return received

    payload = bytes(range(256)) * 8192
    assert ns.run(go()) == payload + b"|EOF"


def test_tcp_spreads_round_robin_over_the_endpoints(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [A, B, C]))
    proxy = make_proxy(ns)

    async def go() -> Counter[str]:
        for address in (A, B, C):
            await ident_server(address)
        await proxy.open(lay)
        return Counter([await ask(port_of(lay, "web")) for _ in range(9)])

    assert ns.run(go()) == Counter({"127.0.0.2:8080": 3, "127.0.0.3:8080": 3, "127.0.0.4:8080": 3})


def test_a_refused_endpoint_is_routed_around_without_failing_a_client(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [NOBODY, B]))
    proxy = make_proxy(ns)

    async def go() -> list[str]:
        await ident_server(B)
        await proxy.open(lay)
        return list(await asyncio.gather(*(ask(port_of(lay, "web")) for _ in range(20))))

    assert ns.run(go()) == ["127.0.0.3:8080"] * 20


def test_a_silent_endpoint_costs_one_dial_timeout_then_is_held_down(ns: NetnsLoop) -> None:
    ns.sh("iptables", "-w", "5", "-A", "OUTPUT", "-d", C[0], "-j", "DROP")  # SYNs vanish
    lay = layout(service_port("web", [C, B]))
    proxy = make_proxy(ns)

    async def go() -> list[str]:
        await ident_server(B)
        await proxy.open(lay)
        return [await ask(port_of(lay, "web")) for _ in range(6)]

    assert ns.run(go()) == ["127.0.0.3:8080"] * 6
    assert proxy.hold_down.held("127.0.0.4:8080")


def test_a_client_is_reset_when_no_endpoint_accepts(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [NOBODY]))
    proxy = make_proxy(ns)

    async def go() -> type[BaseException] | bytes:
        await proxy.open(lay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(lay, "web"))
        try:
            return await asyncio.wait_for(reader.read(), DEADLINE)
        except ConnectionResetError as exc:
            return type(exc)
        finally:
            writer.close()

    assert ns.run(go()) is ConnectionResetError


def test_client_ip_affinity_keeps_each_client_on_one_endpoint(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [A, B, C], affinity=60))
    proxy = make_proxy(ns)
    clients = [f"127.0.1.{i}" for i in range(1, 7)]

    async def go() -> dict[str, set[str]]:
        for address in (A, B, C):
            await ident_server(address)
        await proxy.open(lay)
        seen: dict[str, set[str]] = {c: set() for c in clients}
        for _ in range(5):
            for client in clients:
                seen[client].add(await ask(port_of(lay, "web"), src=client))
        return seen

    seen = ns.run(go())
    assert all(len(eps) == 1 for eps in seen.values()), seen
    assert len(set().union(*seen.values())) == 3, seen  # new clients still rotate


# -- UDP -----------------------------------------------------------------------------------------


def test_udp_is_relayed_and_answered_from_the_address_the_client_sent_to(ns: NetnsLoop) -> None:
    lay = layout(service_port("dns", [A], Protocol.UDP))
    proxy = make_proxy(ns)

    async def go() -> list[bytes]:
        await udp_ident(A)
        await proxy.open(lay)
        port = port_of(lay, "dns")
        # 127.0.0.9 is not the listener's address (it listens on 0.0.0.0): the reply must
        # still come from 127.0.0.9, or a REDIRECTed flow could not be un-NATed.
        return [await udp_ask(udp_client((dst, port))) for dst in ("127.0.0.1", "127.0.0.9")]

    assert ns.run(go()) == [b"127.0.0.2:8080"] * 2


def test_a_udp_client_keeps_its_endpoint_until_idle_then_gets_the_next(ns: NetnsLoop) -> None:
    lay = layout(service_port("dns", [A, B], Protocol.UDP))
    # Back-to-back asks stay well inside it even when a busy host stalls the loop for a moment.
    idle = 2.0
    proxy = make_proxy(ns, udp_timeout=idle)

    async def go() -> tuple[list[bytes], bytes]:
        await udp_ident(A)
        await udp_ident(B)
        await proxy.open(lay)
        sock = udp_client(("127.0.0.1", port_of(lay, "dns")))
        during = [await udp_ask(sock) for _ in range(4)]
        # Idle from now on: wait for the proxy's sweep to end the association, however late the
        # loop runs it, instead of guessing how long that takes.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle + 60
        while len(proxy.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return during, await udp_ask(sock)

    during, after = ns.run(go())
    assert len(set(during)) == 1, during
    assert after != during[0]


def test_udp_to_an_endpoint_without_listener_is_replayed_to_the_next(ns: NetnsLoop) -> None:
    lay = layout(service_port("dns", [NOBODY, B], Protocol.UDP))
    proxy = make_proxy(ns)

    async def go() -> list[bytes]:
        await udp_ident(B)
        await proxy.open(lay)
        port = port_of(lay, "dns")
        return [await udp_ask(udp_client(("127.0.0.1", port))) for _ in range(6)]

    assert ns.run(go()) == [b"127.0.0.3:8080"] * 6


# -- reload and drain ------------------------------------------------------------------------------


def test_reload_keeps_established_connections_and_sends_new_ones_to_the_new_endpoints(ns: NetnsLoop) -> None:
    before = layout(service_port("web", [A]))
    after = layout(service_port("web", [B]))
    proxy = make_proxy(ns)

    async def go() -> tuple[bytes, str, bytes]:
        await echo_server(A)
        await ident_server(B)
        await proxy.open(before)
        port = port_of(before, "web")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"one")
        await reader.readexactly(3)
        changes = await proxy.open(after)
        proxy.close_stale(after, changes)
        assert changes.updated == ["ns1/web:p/tcp"]
        fresh = await ask(port)
        writer.write(b"two")
        writer.write_eof()
        old = await asyncio.wait_for(reader.read(), DEADLINE)
        writer.close()
        return old, fresh, b""

    old, fresh, _ = ns.run(go())
    assert old == b"two|EOF"  # still relayed to A after the reload
    assert fresh == "127.0.0.3:8080"


def test_reload_closes_listeners_of_removed_service_ports_and_opens_new_ones(ns: NetnsLoop) -> None:
    before = layout(service_port("old", [A]))
    after = layout(service_port("new", [A]))
    proxy = make_proxy(ns)

    async def go() -> tuple[str, str]:
        await ident_server(A)
        await proxy.open(before)
        changes = await proxy.open(after)
        proxy.close_stale(after, changes)
        assert (changes.opened, changes.closed) == (["ns1/new:p/tcp"], ["ns1/old:p/tcp"])
        try:
            await ask(port_of(before, "old"))
            old = "answered"
        except ConnectionRefusedError:
            old = "refused"
        return old, await ask(port_of(after, "new"))

    assert ns.run(go()) == ("refused", "127.0.0.2:8080")


def test_drain_stops_accepting_and_waits_for_open_connections(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [A]))
    proxy = make_proxy(ns)

    async def go() -> tuple[str, bytes, int]:
        await echo_server(A)
        await proxy.open(lay)
        port = port_of(lay, "web")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        await reader.readexactly(1)
        # A grace period far beyond DEADLINE: ending with the connection is not ending with it.
        drain = asyncio.create_task(proxy.drain(10 * DEADLINE))
        await asyncio.sleep(0.2)
        try:
            await ask(port)
            new = "answered"
        except ConnectionRefusedError:
            new = "refused"
        writer.write(b"still here")
        writer.write_eof()
        old = await asyncio.wait_for(reader.read(), DEADLINE)
        writer.close()
        cut = await asyncio.wait_for(drain, DEADLINE)  # finishes as soon as the connection ended
        return new, old, cut

    assert ns.run(go()) == ("refused", b"still here|EOF", 0)


def test_drain_cuts_what_is_still_open_at_the_end_of_the_grace_period(ns: NetnsLoop) -> None:
    lay = layout(service_port("web", [A]))
    proxy = make_proxy(ns)

    async def go() -> tuple[int, bytes]:
        await echo_server(A)
        await proxy.open(lay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(lay, "web"))
        writer.write(b"x")
        await reader.readexactly(1)
        cut = await proxy.drain(0.3)
        try:
            rest = await asyncio.wait_for(reader.read(), DEADLINE)
        except ConnectionResetError:
            rest = b"<reset>"
        writer.close()
        return cut, rest

    cut, rest = ns.run(go())
    assert cut == 1 and rest in (b"", b"<reset>")


def test_a_connect_the_kernel_completed_counts_even_if_the_loop_saw_the_timer_first(ns: NetnsLoop) -> None:
    """Hundreds of clients at once keep the loop busy past the first dial timeout (0.25 s); a
    handshake completed meanwhile must not make a live endpoint look dead (and every client
    retry every endpoint)."""
    peer = ns.peer()
    listener = peer.listen(("10.99.0.2", 8080))

    def handshake_done() -> None:
        # Blocks the loop until the kernel completed the handshake (the listener has it queued):
        # waited for, not guessed, however late a busy host processes the SYN.
        queued, _, _ = select.select([listener], [], [], DEADLINE)
        assert queued, "the handshake never completed"

    async def go() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        dialing = asyncio.create_task(dial("10.99.0.2:8080", 0.25))
        await asyncio.sleep(0)  # dial ran: its timer is armed, its connect queued for the next round
        # The loop is stuck: the timer expires. In the next round the loop runs the connect, then
        # handshake_done, then the expired timer, and only the round after that sees the connect
        # finish: the timer is seen first, with the handshake complete.
        loop.call_soon(handshake_done)
        time.sleep(0.5)
        sock = await dialing
        try:
            return sock.getpeername()[0], sock.getsockname()[0]
        finally:
            sock.close()

    try:
        assert ns.run(go()) == ("10.99.0.2", "10.99.0.1")
    finally:
        listener.close()


def test_a_silent_endpoint_still_times_out(ns: NetnsLoop) -> None:
    ns.sh("iptables", "-w", "5", "-A", "OUTPUT", "-d", "10.99.0.2", "-j", "DROP")
    ns.peer()

    async def go() -> None:
        await dial("10.99.0.2:8080", 0.25)

    with pytest.raises(TimeoutError):
        ns.run(go())
