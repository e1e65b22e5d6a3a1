"""Probes (what to send, from where) and outcomes (what happened to each connection).

Outcome per connection:

* :class:`Answered` — an endpoint in the pods namespace answered; says which ip:port received the
  connection (after DNAT) and which source it saw (after SNAT/masquerade).
* :class:`Sink` — nothing rewrote the destination: the sink (or a socket on the node itself, for
  node addresses) answered.
* :class:`Rejected` — ECONNREFUSED / ICMP unreachable / RST, or EPERM on a node-local send
  (netfilter refusing a locally generated packet).
* :class:`Dropped` — no answer within the timeout.
* :class:`Failed` — anything else (e.g. connected but no answer): always a bug somewhere.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .netns import NetnsWorker
from .topology import NODE_ADDRESSES

Origin = Literal["ext", "pod", "node"]
Proto = Literal["tcp", "udp"]

DEFAULT_TIMEOUT = 1.0
MAX_IN_FLIGHT = 256

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
    """

    origin: Origin
    dst: str
    port: int
    proto: Proto = "tcp"
    src: str | tuple[str, ...] | None = None
    count: int = 1
    timeout: float = DEFAULT_TIMEOUT

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
    proto: Proto
    src: str
    src_port: int
    dst: str
    port: int
    timeout: float


async def _tcp(loop: asyncio.AbstractEventLoop, sock: socket.socket, a: Attempt) -> Outcome:
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (a.dst, a.port)), a.timeout)
    except TimeoutError:
        return Dropped()
    except OSError as exc:
        return _classify_error(exc, "connect")
    data = b""
    try:
        while b"\n" not in data:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), a.timeout)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        return Failed("connected, but no answer within the timeout")
    except OSError as exc:
        return Failed(f"connected, then {exc!r}")
    return parse_answer(data)


async def _udp(loop: asyncio.AbstractEventLoop, sock: socket.socket, a: Attempt) -> Outcome:
    try:
        # A connected UDP socket reports ICMP errors (ECONNREFUSED) and accepts replies only from
        # the address it sent to: a reply that conntrack failed to un-NAT counts as no reply.
        sock.connect((a.dst, a.port))
        sock.send(b"s2r-probe\n")
    except OSError as exc:
        # EPERM: netfilter dropped/rejected our own packet in OUTPUT.
        return _classify_error(exc, "send")
    try:
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), a.timeout)
    except TimeoutError:
        return Dropped()
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


async def run_attempts(worker: NetnsWorker, attempts: Sequence[Attempt]) -> list[Outcome]:
    """All attempts concurrently (at most MAX_IN_FLIGHT sockets open at once)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(a: Attempt) -> Outcome:
        async with gate:
            sock = await asyncio.wrap_future(worker.submit(make_client_socket, a))
            try:
                return await (_tcp(loop, sock, a) if a.proto == "tcp" else _udp(loop, sock, a))
            finally:
                sock.close()

    return list(await asyncio.gather(*(one(a) for a in attempts)))
