"""Endpoint choice: round-robin, random, ClientIP affinity and the retry order."""

from __future__ import annotations

import random
from collections import Counter

from svc2rules.userspace.balancer import (
    DIAL_TIMEOUTS,
    AffinityTable,
    Balancer,
    Balancing,
    HoldDown,
    dial_timeout,
)

EPS = ("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def balancer(
    endpoints: tuple[str, ...] = EPS,
    *,
    affinity: float | None = None,
    clock: Clock | None = None,
    **kw: object,
) -> Balancer:
    clock = clock or Clock()
    table = AffinityTable(affinity, clock) if affinity else None
    return Balancer(endpoints, affinity=table, hold_down=HoldDown(clock), **kw)  # type: ignore[arg-type]


def test_round_robin_takes_each_endpoint_in_turn() -> None:
    b = balancer()
    assert [b.attempts("1.1.1.1")[0] for _ in range(6)] == [*EPS, *EPS]


def test_random_reaches_every_endpoint_evenly() -> None:
    b = balancer(mode=Balancing.RANDOM, rng=random.Random(7))
    firsts = Counter(b.attempts("1.1.1.1")[0] for _ in range(3000))
    assert set(firsts) == set(EPS)
    assert all(900 < n < 1100 for n in firsts.values()), firsts


def test_a_failed_attempt_moves_on_to_the_next_endpoint_and_tries_each_before_repeating() -> None:
    attempts = balancer().attempts("1.1.1.1")
    assert attempts == [EPS[0], EPS[1], EPS[2], EPS[0]]
    assert len(attempts) == max(len(EPS), len(DIAL_TIMEOUTS))


def test_a_single_endpoint_is_retried_once_per_dial_timeout() -> None:
    assert balancer(EPS[:1]).attempts("1.1.1.1") == [EPS[0]] * len(DIAL_TIMEOUTS)
    assert [dial_timeout(i) for i in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_no_endpoints_means_nothing_to_try() -> None:
    assert balancer(()).attempts("1.1.1.1") == []


def test_an_endpoint_that_just_failed_is_tried_last_until_its_hold_down_ends() -> None:
    clock = Clock()
    b = balancer(clock=clock)
    b.failed(EPS[0])
    assert b.attempts("1.1.1.1")[:3] == [EPS[1], EPS[2], EPS[0]]
    clock.now += 5.1
    b2 = balancer(clock=clock)
    b2.hold_down = b.hold_down
    assert b2.attempts("1.1.1.1")[0] == EPS[0]


def test_a_success_ends_the_hold_down() -> None:
    b = balancer()
    b.failed(EPS[0])
    b.connected("1.1.1.1", EPS[0])
    assert not b.hold_down.held(EPS[0])


def test_client_ip_affinity_sticks_to_the_endpoint_last_used() -> None:
    b = balancer(affinity=10)
    first = b.attempts("1.1.1.1")[0]
    b.connected("1.1.1.1", first)
    assert [b.attempts("1.1.1.1")[0] for _ in range(5)] == [first] * 5
    others = {b.attempts(f"2.2.2.{i}")[0] for i in range(3)}
    assert others == set(EPS)  # clients without affinity keep rotating


def test_affinity_expires_timeout_seconds_after_the_last_use() -> None:
    clock = Clock()
    b = balancer(affinity=10, clock=clock)
    b.connected("1.1.1.1", EPS[2])
    clock.now += 9
    assert b.attempts("1.1.1.1")[0] == EPS[2]
    b.connected("1.1.1.1", EPS[2])  # used again: the timeout restarts
    clock.now += 9
    assert b.attempts("1.1.1.1")[0] == EPS[2]
    clock.now += 11
    assert b.affinity is not None and b.affinity.get("1.1.1.1") is None


def test_a_sticky_endpoint_that_failed_is_not_preferred() -> None:
    b = balancer(affinity=10)
    b.connected("1.1.1.1", EPS[1])
    b.failed(EPS[1])
    assert b.attempts("1.1.1.1")[0] != EPS[1]


def test_a_sticky_endpoint_that_left_the_list_is_forgotten() -> None:
    clock = Clock()
    table = AffinityTable(10, clock)
    old = Balancer(EPS, affinity=table, hold_down=HoldDown(clock))
    old.connected("1.1.1.1", EPS[0])
    new = Balancer(EPS[1:], affinity=table, hold_down=HoldDown(clock))
    assert new.attempts("1.1.1.1")[0] in EPS[1:]


def test_a_client_is_sticky_from_the_choice_on_not_only_once_connected() -> None:
    b = balancer(affinity=10)
    first = b.attempts("1.1.1.1")[0]
    # A second connection from the same client before the first one was established.
    assert b.attempts("1.1.1.1")[0] == first
