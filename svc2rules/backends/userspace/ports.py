"""Which node port each proxied endpoint list listens on.

A port is a pure function of the listener's identity (`ns/svc:port` + protocol, plus the
endpoint list it serves) and the port range: the first candidate is a hash of the identity,
so adding, removing or reordering other Services never moves it. Only when two identities
hash to the same port does one of them move, and which one is decided without looking at
input order: identities are placed in sorted order, each taking the first free port from
its own hash onwards (linear probing, wrapping around the range). So a new listener can move
an existing one only when it hashes onto a port already taken (or onto one that a listener
probing past a collision would take), with probability about (listeners in use) / (size of
the range); changing a Service's endpoints or port numbers never changes its identities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from svc2rules.errors import UsageError

# Below the NodePort range (30000-32767) and the kernel's ephemeral ports (32768-60999), so a
# listener never collides with a NodePort rule or with an outgoing connection's source port.
DEFAULT_PORT_RANGE = "20000-29999"


@dataclass(frozen=True, slots=True)
class PortRange:
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """`A-B` (inclusive) or a single port, as kube-proxy's `--proxy-port-range` reads it."""
        first_text, sep, last_text = text.strip().partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if sep else first
        except ValueError:
            raise UsageError(f"port range must be A-B, got {text!r}") from None
        if not 1 <= first <= last <= 65535:
            raise UsageError(f"port range must satisfy 1 <= A <= B <= 65535, got {text!r}")
        return cls(first, last)


def _offset(identity: str, size: int) -> int:
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def assign_ports(identities: Iterable[str], port_range: PortRange) -> dict[str, int]:
    """A port in `port_range` for every identity; raises UsageError when the range is too small."""
    unique = sorted(set(identities))
    if len(unique) > port_range.size:
        raise UsageError(
            f"port range {port_range} has {port_range.size} port(s) but {len(unique)} listeners need one each"
        )
    taken: set[int] = set()
    out: dict[str, int] = {}
    for identity in unique:
        offset = _offset(identity, port_range.size)
        # Terminates: fewer identities than ports, so a free port exists.
        while port_range.first + offset in taken:
            offset = (offset + 1) % port_range.size
        port = port_range.first + offset
        taken.add(port)
        out[identity] = port
    return out
