"""Local port assignment: deterministic, inside the range, independent of other Services."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svc2rules.backends.userspace.ports import DEFAULT_PORT_RANGE, PortRange, assign_ports
from svc2rules.errors import UsageError

RANGE = PortRange(20000, 29999)
NAMES = st.lists(st.from_regex(r"ns[0-9]/svc[0-9]{1,3}:p[0-9]{1,2}(tcp|udp)", fullmatch=True), unique=True)


@pytest.mark.parametrize(
    ("text", "expected"), [("20000-29999", PortRange(20000, 29999)), ("8080", PortRange(8080, 8080))]
)
def test_a_range_is_a_to_b_or_one_port(text: str, expected: PortRange) -> None:
    assert PortRange.parse(text) == expected
    assert str(PortRange.parse(DEFAULT_PORT_RANGE)) == DEFAULT_PORT_RANGE


@pytest.mark.parametrize("text", ["", "a-b", "0-10", "10-5", "1-65536", "-5", "5-"])
def test_bad_ranges_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        PortRange.parse(text)


def test_the_default_range_avoids_node_ports_and_ephemeral_ports() -> None:
    default = PortRange.parse(DEFAULT_PORT_RANGE)
    assert default.last < 30000  # NodePorts: 30000-32767; ephemeral: 32768-60999


@given(NAMES)
def test_every_identity_gets_its_own_port_inside_the_range(names: list[str]) -> None:
    ports = assign_ports(names, RANGE)
    assert set(ports) == set(names)
    assert len(set(ports.values())) == len(names)
    assert all(p in RANGE for p in ports.values())


@given(NAMES, st.randoms(use_true_random=False))
def test_the_order_of_the_identities_does_not_matter(names: list[str], rnd: random.Random) -> None:
    shuffled = list(names)
    rnd.shuffle(shuffled)
    assert assign_ports(shuffled, RANGE) == assign_ports(names, RANGE)


@given(NAMES, NAMES)
def test_other_identities_cannot_move_a_port_unless_they_hash_onto_a_taken_one(
    a: list[str], b: list[str]
) -> None:
    alone = assign_ports(a, RANGE)
    others = [name for name in b if name not in alone]
    first_choices = [assign_ports([name], RANGE)[name] for name in others]
    if len(set(first_choices)) == len(first_choices) and not set(first_choices) & set(alone.values()):
        together = assign_ports(a + others, RANGE)
        assert {name: together[name] for name in a} == alone


def test_a_collision_moves_one_of_the_two_to_the_next_free_port() -> None:
    tiny = PortRange(100, 102)
    ports = assign_ports(["a", "b", "c"], tiny)
    assert sorted(ports.values()) == [100, 101, 102]
    assert assign_ports(["c", "b", "a"], tiny) == ports


def test_a_range_too_small_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="2 port"):
        assign_ports(["a", "b", "c"], PortRange(100, 101))
