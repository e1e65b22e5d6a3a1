"""The `ip -batch` writer and the `ip -o address show` reader."""

from __future__ import annotations

from svc2rules.family import IPFamily
from svc2rules.syntax import iproute

# `ip -o -4 address show dev svc2rules-ipvs0` (iproute2 6.1).
SHOWN = """\
7: svc2rules-ipvs0    inet 172.30.0.10/32 scope global svc2rules-ipvs0\\       valid_lft forever preferred_lft forever
7: svc2rules-ipvs0    inet 192.168.99.1/32 scope global svc2rules-ipvs0\\       valid_lft forever preferred_lft forever
"""


def test_a_dummy_interface_and_its_host_addresses_as_batch_input() -> None:
    commands: list[iproute.Command] = [
        iproute.LinkAdd("d0"),
        iproute.LinkUp("d0"),
        iproute.AddressAdd("d0", "172.30.0.10"),
        iproute.AddressDelete("d0", "fd00::10"),
        iproute.LinkDelete("d0"),
    ]
    assert iproute.write(commands).splitlines() == [
        "link add d0 type dummy",
        "link set d0 up",
        "address add 172.30.0.10/32 dev d0",
        "address del fd00::10/128 dev d0",
        "link del d0",
    ]


def test_commands_as_a_person_types_them() -> None:
    assert iproute.command_line(iproute.LinkAdd("d0"), iproute.LinkUp("d0")) == (
        "ip link add d0 type dummy && ip link set d0 up"
    )


def test_the_address_listing_asks_for_one_family_and_reads_back_the_addresses() -> None:
    assert iproute.show_addresses_argv("d0", IPFamily.IPv6)[:2] == ["ip", "-6"]
    assert iproute.read_addresses(SHOWN) == ["172.30.0.10", "192.168.99.1"]
    assert iproute.read_addresses("") == []
