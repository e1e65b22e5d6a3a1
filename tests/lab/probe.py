"""Probes (what to send, from where) and outcomes (what happened to each connection).

Outcome per connection:

* :class:`Answered` — an endpoint in the pods namespace answered; says which ip:port received the
  connection (after DNAT) and which source it saw (after SNAT/masquerade).
* :class:`Sink` — nothing rewrote the destination: the sink (or a socket on the node itself, for
  node addresses) answered.
* :class:`Rejected` — ECONNREFUSED / ICMP unreachable / RST, or EPERM on a node-local send
  (netfilter refusing a locally generated packet).
* :class:`Dropped` — no answer by the attempt's deadline (see below).
* :class:`Failed` — anything else (e.g. connected but no answer): always a bug somewhere.

The lab shares its machine with whatever else runs there, so an answer may be late or a datagram
lost on a busy host. No single packet decides a verdict: a UDP probe is resent (on the same socket,
so the same conntrack entry and endpoint) and a TCP connect keeps the kernel's SYN retransmissions,
until an answer or the deadline. The deadline depends on what the test expects:

* a connection that should be answered (the default) is given :data:`ANSWER_DEADLINE`, generous:
  only a failing test ever waits that long, an answer ends the wait at once;
* a connection the test expects to be dropped (``expect_drop``) is watched for :data:`DROP_WINDOW`
  *and* until every should-be-answered connection of the same batch has its verdict, so that on a
  slow host the window stretches with the traffic that proves the lab is moving packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .netns import NetnsWorker
from .topology import NODE_ADDRESSES

T = TypeVar("T")
Origin = Literal["ext", "pod", "node"]
Proto = Literal["tcp", "udp"]

#: Seconds a connection that should be answered keeps being tried before it counts as Dropped.
ANSWER_DEADLINE = 30.0
#: Seconds a connection expected to be dropped is watched for an (unexpected) answer, at least.
DROP_WINDOW = 2.0
#: A UDP probe without an answer is resent after this, then after twice as long, up to the cap.
UDP_RESEND_FIRST = 0.25
UDP_RESEND_CAP = 2.0
MAX_IN_FLIGHT = 256
UDP_PAYLOAD = b"s2r-probe\n"

# Errors that mean "something on the path actively refused".
_REJECT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EACCES,
    errno.EPERM,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.ECONNRESET,
}


@dataclass(frozen=True)
class Answered:
    endpoint: str
    saw_source: str
    saw_source_port: int = field(default=0, compare=False)

    @property
    def masqueraded(self) -> bool:
        """The endpoint saw a node address instead of the client's own."""
        return self.saw_source in NODE_ADDRESSES


@dataclass(frozen=True)
class Sink:
    seen_dst: str = field(default="", compare=False)
    saw_source: str = field(default="", compare=False)
    host: str = "sink"  # "sink", or "node" when a node address was hit and not rewritten


@dataclass(frozen=True)
class Rejected:
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Dropped:
    pass


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Answered | Sink | Rejected | Dropped | Failed


@dataclass(frozen=True)
class Probe:
    """``count`` connections from ``origin`` (ext, pod or node) to ``dst:port`` over ``proto``.

    ``src`` picks the client address (it must exist in the origin namespace); ``None`` means the
    lab default for that origin (ext 203.0.113.1, pod 10.180.0.200) or, for the node, whatever the
    kernel picks. ``src`` may also be a sequence: connection *i* uses ``src[i % len(src)]``.

    ``expect_drop`` says the test expects no answer: the connections are then watched for
    :data:`DROP_WINDOW` (and until the batch's other connections settled) instead of being retried
    until :data:`ANSWER_DEADLINE`. It only sets how long to wait; the verdict is still what happened.
    """

    origin: Origin
    dst: str
    port: int
    proto: Proto = "tcp"
    src: str | tuple[str, ...] | None = None
    count: int = 1
    expect_drop: bool = False

    @property
    def timeout(self) -> float:
        """Seconds without an answer after which a connection of this probe counts as Dropped."""
        return DROP_WINDOW if self.expect_drop else ANSWER_DEADLINE

    def sources(self) -> list[str | None]:
        if self.src is None or isinstance(self.src, str):
            return [self.src] * self.count
        return [self.src[i % len(self.src)] for i in range(self.count)]


@dataclass
class ProbeResult:
    probe: Probe
    outcomes: list[Outcome]
    sources: list[str | None] = field(default_factory=list)

    @property
    def answered(self) -> list[Answered]:
        return [o for o in self.outcomes if isinstance(o, Answered)]

    @property
    def endpoints(self) -> Counter[str]:
        """How often each endpoint (ip:port after DNAT) answered."""
        return Counter(o.endpoint for o in self.answered)

    @property
    def endpoint_set(self) -> set[str]:
        return set(self.endpoints)

    @property
    def kinds(self) -> Counter[str]:
        return Counter(type(o).__name__ for o in self.outcomes)

    @property
    def saw_sources(self) -> set[str]:
        return {o.saw_source for o in self.answered}

    @property
    def masqueraded(self) -> bool:
        """Every connection was answered, and every endpoint saw a node address."""
        return self.all(Answered) and all(o.masqueraded for o in self.answered)

    @property
    def saw_client(self) -> bool:
        """Every connection was answered, and every endpoint saw the client's own address."""
        return self.all(Answered) and all(
            o.saw_source == s for o, s in zip(self.answered, self.sources, strict=True)
        )

    def all(self, kind: type[Answered | Sink | Rejected | Dropped | Failed]) -> bool:
        return bool(self.outcomes) and all(isinstance(o, kind) for o in self.outcomes)

    def by_source(self) -> dict[str | None, Counter[str]]:
        """Endpoints answered, per client source address (for session affinity)."""
        out: dict[str | None, Counter[str]] = {}
        for src, o in zip(self.sources, self.outcomes, strict=True):
            if isinstance(o, Answered):
                out.setdefault(src, Counter())[o.endpoint] += 1
        return out

    def summary(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.kinds.items()))
        eps = dict(sorted(self.endpoints.items()))
        p = self.probe
        first_odd = next((o for o in self.outcomes if not isinstance(o, Answered)), None)
        return (
            f"{p.origin}({p.src or 'default'}) -> {p.dst}:{p.port}/{p.proto} x{p.count}: {kinds}"
            + (f" endpoints={eps}" if eps else "")
            + (f" saw={sorted(self.saw_sources)}" if self.answered else "")
            + (f" e.g. {first_odd!r}" if first_odd is not None else "")
        )

    def __repr__(self) -> str:
        return f"<ProbeResult {self.summary()}>"


def parse_answer(data: bytes) -> Outcome:
    try:
        body = json.loads(data.decode().strip().splitlines()[0])
        role, local, peer = body["role"], body["local"], body["peer"]
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        return Failed(f"unparseable answer {data[:200]!r}")
    peer_ip, _, peer_port = str(peer).rpartition(":")
    if role == "pod":
        return Answered(endpoint=str(local), saw_source=peer_ip, saw_source_port=int(peer_port))
    return Sink(seen_dst=str(local), saw_source=peer_ip, host=str(role))


def _classify_error(exc: OSError, stage: str) -> Outcome:
    if exc.errno in _REJECT_ERRNOS:
        return Rejected(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
    return Failed(f"{stage}: {exc!r}")


@dataclass(frozen=True)
class Attempt:
    """One connection. ``timeout``: seconds without an answer before it counts as Dropped."""

    proto: Proto
    src: str
    src_port: int
    dst: str
    port: int
    timeout: float = ANSWER_DEADLINE
    expect_drop: bool = False


class Batch:
    """The should-be-answered connections of one round of probes that have no verdict yet.

    Expected drops wait for them (:func:`_give_up`): while answers are still arriving, the host is
    slow and a short window would prove nothing.
    """

    def __init__(self) -> None:
        self.pending = 0
        self.settled = asyncio.Event()
        self.settled.set()

    def add(self, attempts: Sequence[Attempt]) -> None:
        self.pending += sum(not a.expect_drop for a in attempts)
        if self.pending:
            self.settled.clear()

    def done(self, a: Attempt) -> None:
        if not a.expect_drop:
            self.pending -= 1
            if self.pending == 0:
                self.settled.set()


async def _give_up(a: Attempt, batch: Batch) -> None:
    """Returns when ``a`` has waited long enough for an answer."""
    await asyncio.sleep(a.timeout)
    if a.expect_drop:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.settled.wait(), ANSWER_DEADLINE)


async def _first(op: asyncio.Future[T], stop: asyncio.Future[None], wait: float | None = None) -> bool:
    """Wait for ``op`` (True), or ``stop`` or ``wait`` seconds (False, ``op`` still pending).

    ``op`` wins a tie: an answer that is there counts, however late the loop looked.
    """
    either: set[asyncio.Future[Any]] = {op, stop}
    await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    return op.done()


async def _cancel(op: asyncio.Future[T]) -> None:
    if not op.done():
        op.cancel()
    with contextlib.suppress(asyncio.CancelledError, OSError):
        await op


async def _tcp(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, a: Attempt, stop: asyncio.Future[None]
) -> Outcome:
    # The kernel retransmits an unanswered SYN (after 1 s, 3 s, 7 s, ...) while we wait.
    connect = asyncio.ensure_future(loop.sock_connect(sock, (a.dst, a.port)))
    if not await _first(connect, stop):
        await _cancel(connect)
        return Dropped()
    try:
        connect.result()
    except OSError as exc:
        return _classify_error(exc, "connect")
    data = b""
    while b"\n" not in data:
        recv = asyncio.ensure_future(loop.sock_recv(sock, 4096))
        if not await _first(recv, stop):
            await _cancel(recv)
            return Failed(f"connected, but no answer within {a.timeout:g}s")
        try:
            chunk = recv.result()
        except OSError as exc:
            return Failed(f"connected, then {exc!r}")
        if not chunk:
            break
        data += chunk
    return parse_answer(data)


async def _udp(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, a: Attempt, stop: asyncio.Future[None]
) -> Outcome:
    try:
        # A connected UDP socket reports ICMP errors (ECONNREFUSED) and accepts replies only from
        # the address it sent to: a reply that conntrack failed to un-NAT counts as no reply.
        sock.connect((a.dst, a.port))
        sock.send(UDP_PAYLOAD)
    except OSError as exc:
        # EPERM: netfilter dropped/rejected our own packet in OUTPUT.
        return _classify_error(exc, "send")
    recv = asyncio.ensure_future(loop.sock_recv(sock, 4096))
    try:
        resend_after = UDP_RESEND_FIRST
        while not await _first(recv, stop, resend_after):
            if stop.done():
                return Dropped()
            # Same socket, same 5-tuple: the resend rides the conntrack entry (and endpoint) the
            # first datagram made, so a spread is not skewed. A pending ICMP error surfaces here.
            try:
                sock.send(UDP_PAYLOAD)
            except OSError as exc:
                return _classify_error(exc, "send")
            resend_after = min(resend_after * 2, UDP_RESEND_CAP)
    finally:
        await _cancel(recv)
    try:
        data = recv.result()
    except OSError as exc:
        return _classify_error(exc, "recv")
    return parse_answer(data)


def make_client_socket(a: Attempt) -> socket.socket:
    """Runs inside the origin namespace's worker thread: the socket inherits that namespace."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if a.proto == "tcp" else socket.SOCK_DGRAM)
    try:
        # SO_REUSEADDR: a client port may sit in TIME_WAIT from an earlier connection of this test.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setblocking(False)
        # Explicit, never-reused source ports: a reused UDP 5-tuple would ride an existing
        # conntrack entry to the same backend and fake "affinity".
        s.bind((a.src, a.src_port))
    except BaseException:
        s.close()
        raise
    return s


async def run_attempts(
    worker: NetnsWorker, attempts: Sequence[Attempt], batch: Batch | None = None
) -> list[Outcome]:
    """All attempts concurrently (at most MAX_IN_FLIGHT sockets open at once), in order.

    ``batch`` is shared by the calls that make up one round (see :class:`Batch`); by default
    the attempts are a round of their own.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    if batch is None:
        batch = Batch()
        batch.add(attempts)

    async def one(a: Attempt) -> Outcome:
        try:
            async with gate:
                sock = await asyncio.wrap_future(worker.submit(make_client_socket, a))
                stop = asyncio.ensure_future(_give_up(a, batch))
                try:
                    return await (
                        _tcp(loop, sock, a, stop) if a.proto == "tcp" else _udp(loop, sock, a, stop)
                    )
                finally:
                    await _cancel(stop)
                    sock.close()
        finally:
            batch.done(a)

    # Should-be-answered attempts take the gate first: expected drops hold their slot until those
    # settled, so they must never be the ones keeping them out.
    order = sorted(range(len(attempts)), key=lambda i: attempts[i].expect_drop)
    done = await asyncio.gather(*(one(attempts[i]) for i in order))
    outcomes: list[Outcome] = [Dropped()] * len(attempts)
    for i, outcome in zip(order, done, strict=True):
        outcomes[i] = outcome
    return outcomes
