"""This host's node facts as kube-proxy and the kubelet find them: the hostname, and per family
the address of the default route's interface."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.host.node import PrimaryAddress, host_name, primary_address


class IpJson:
    """`ip -j -4|-6 route show default` and `ip -j -4|-6 addr show dev X scope global`, answered
    from tables given per family."""

    commands = ("ip",)

    def __init__(
        self, routes: dict[str, list[dict[str, Any]]], links: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.routes = routes
        self.links = links

    def run(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        _ip, json_flag, family, *rest = argv
        assert json_flag == "-j"
        if rest[:3] == ["route", "show", "default"]:
            return 0, json.dumps(self.routes.get(family, [])), ""
        assert rest[:2] == ["addr", "show"] and rest[-2:] == ["scope", "global"], argv
        device = rest[3]
        return 0, json.dumps([link for link in self.links.get(family, []) if link["ifname"] == device]), ""


def fake(routes: dict[str, list[dict[str, Any]]], links: dict[str, list[dict[str, Any]]]) -> FakeRunner:
    return FakeRunner(lambda: IpJson(routes, links))


def link(name: str, *addresses: dict[str, Any]) -> dict[str, Any]:
    return {"ifname": name, "addr_info": list(addresses)}


HOST = fake(
    {
        "-4": [
            {"dst": "default", "gateway": "192.0.2.1", "dev": "eth1", "metric": 200},
            {"dst": "default", "gateway": "198.51.100.1", "dev": "eth0", "metric": 100},
        ],
        "-6": [{"dst": "default", "gateway": "fe80::1", "dev": "eth0", "metric": 1024}],
    },
    {
        "-4": [
            link("eth0", {"local": "198.51.100.7", "scope": "global"}, {"local": "198.51.100.8"}),
            link("eth1", {"local": "192.0.2.7"}),
        ],
        "-6": [
            link(
                "eth0",
                {"local": "2001:db8::dead", "tentative": True},
                {"local": "2001:db8::old", "deprecated": True},
                {},
                {"local": "2001:db8::7"},
            )
        ],
    },
)


def test_the_primary_address_is_the_first_of_the_lowest_metric_default_routes_interface() -> None:
    assert primary_address(IPFamily.IPv4, HOST) == PrimaryAddress(IPFamily.IPv4, "198.51.100.7", "eth0")


def test_tentative_and_deprecated_addresses_are_passed_over() -> None:
    assert primary_address(IPFamily.IPv6, HOST) == PrimaryAddress(IPFamily.IPv6, "2001:db8::7", "eth0")


def test_a_routes_preferred_source_wins() -> None:
    runner = fake({"-4": [{"dst": "default", "dev": "eth0", "prefsrc": "198.51.100.8"}]}, {})
    assert primary_address(IPFamily.IPv4, runner) == PrimaryAddress(IPFamily.IPv4, "198.51.100.8", "eth0")


@pytest.mark.parametrize(
    "runner",
    [
        fake({}, {}),  # no default route
        fake({"-4": [{"dst": "default", "dev": "eth0"}]}, {}),  # its interface has no address
        FakeRunner(),  # no `ip` on this host
    ],
)
def test_no_default_route_or_no_address_is_none(runner: FakeRunner) -> None:
    assert primary_address(IPFamily.IPv4, runner) is None


def test_the_host_name_is_trimmed_and_lower_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: " Worker-1.Example ")
    assert host_name() == "worker-1.example"
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert host_name() is None
