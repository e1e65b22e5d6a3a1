"""Endpoint choice for one listener: round-robin or random, ClientIP affinity, retry order.

Follows kube-proxy's userspace LoadBalancerRR: a sticky client goes back to its endpoint
while the affinity has not expired (timeout counted from the last use), everyone else takes
the next endpoint in turn; when a connection to the chosen endpoint fails, the next one is
tried. One addition: an endpoint whose connection just failed is tried last for a few
seconds (`HoldDown`), so one dead endpoint does not cost every new client a timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

Clock = Callable[[], float]

# kube-proxy's userspace EndpointDialTimeouts: one connect attempt per entry, each with a
# longer timeout; a listener with fewer endpoints than entries tries some of them twice.
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
HOLD_DOWN_SECONDS = 5.0


class Balancing(StrEnum):
    ROUND_ROBIN = "round-robin"
    RANDOM = "random"


@dataclass
class AffinityTable:
    """ClientIP -> endpoint, shared by every listener of one service port."""

    timeout: float
    clock: Clock
    entries: dict[str, tuple[str, float]] = field(default_factory=dict)

    def get(self, client: str) -> str | None:
        entry = self.entries.get(client)
        if entry is None:
            return None
        endpoint, last_used = entry
        if self.clock() - last_used > self.timeout:
            del self.entries[client]
            return None
        return endpoint

    def set(self, client: str, endpoint: str) -> None:
        self.entries[client] = (endpoint, self.clock())

    def expire(self) -> None:
        now = self.clock()
        for client in [c for c, (_, used) in self.entries.items() if now - used > self.timeout]:
            del self.entries[client]


@dataclass
class HoldDown:
    """Endpoints that recently refused or timed out, shared by the whole proxy."""

    clock: Clock
    seconds: float = HOLD_DOWN_SECONDS
    until: dict[str, float] = field(default_factory=dict)

    def failed(self, endpoint: str) -> None:
        self.until[endpoint] = self.clock() + self.seconds

    def succeeded(self, endpoint: str) -> None:
        self.until.pop(endpoint, None)

    def held(self, endpoint: str) -> bool:
        until = self.until.get(endpoint)
        if until is None:
            return False
        if self.clock() >= until:
            del self.until[endpoint]
            return False
        return True


class Balancer:
    """The order in which one new connection tries the listener's endpoints (`ip:port`)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        mode: Balancing = Balancing.ROUND_ROBIN,
        affinity: AffinityTable | None = None,
        hold_down: HoldDown,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.mode = mode
        self.affinity = affinity
        self.hold_down = hold_down
        self.rng = rng or random.Random()
        self._next = 0

    def attempts(self, client: str) -> list[str]:
        """Endpoints to try in order: at least one per dial timeout, each endpoint at least once."""
        n = len(self.endpoints)
        if n == 0:
            return []
        if self.mode is Balancing.RANDOM:
            start = self.rng.randrange(n)
        else:
            start = self._next
            self._next = (self._next + 1) % n
        rotated = self.endpoints[start:] + self.endpoints[:start]
        order = [e for e in rotated if not self.hold_down.held(e)]
        order += [e for e in rotated if e not in order]
        sticky = self.affinity.get(client) if self.affinity else None
        if sticky in order and not self.hold_down.held(sticky):
            order.remove(sticky)
            order.insert(0, sticky)
        # Sticky from the choice on, as kube-proxy's LoadBalancerRR: the client's next connection
        # may arrive before this one is established, and must not be sent elsewhere.
        self.remember(client, order[0])
        return [order[i % n] for i in range(max(n, len(DIAL_TIMEOUTS)))]

    def connected(self, client: str, endpoint: str) -> None:
        """The endpoint accepted the client: it is alive, and the client sticks to it."""
        self.hold_down.succeeded(endpoint)
        self.remember(client, endpoint)

    def remember(self, client: str, endpoint: str) -> None:
        if self.affinity is not None:
            self.affinity.set(client, endpoint)

    def failed(self, endpoint: str) -> None:
        self.hold_down.failed(endpoint)


def dial_timeout(attempt: int) -> float:
    return DIAL_TIMEOUTS[min(attempt, len(DIAL_TIMEOUTS) - 1)]
