"""The real nft accepts every script, which replaces our table whole and touches nothing else."""

from __future__ import annotations

import copy
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svc2rules.config import ProxyConfig
from tests.backends.nftables.helpers import nft_check, nft_in_private_netns, nft_text, root_only
from tests.conftest import endpoint_slice, service
from tests.property.strategies import clusters

pytestmark = root_only

CONFIGS = st.builds(
    ProxyConfig,
    node_name=st.just("node1"),
    node_ips=st.sampled_from([(), ("192.168.0.2",), ("192.168.0.2", "10.1.0.2")]),
    cluster_cidrs=st.sampled_from([(), ("10.0.0.0/8",)]),
    masquerade_all=st.booleans(),
    masquerade_bit=st.integers(0, 31),
    node_port_addresses=st.sampled_from(
        [(), ("192.168.0.0/16",), ("127.0.0.0/8",), ("primary", "10.9.0.0/16")]
    ),
    conntrack_tcp_be_liberal=st.booleans(),
)


@st.composite
def colliding_clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Random clusters, then made nasty: shared VIPs, NodePorts and endpoints, overlapping ranges."""
    objects = copy.deepcopy(draw(clusters()))
    services = [o for o in objects if o["kind"] == "Service"]
    for svc in services:
        spec = svc["spec"]
        if draw(st.booleans()) and len(services) > 1:
            spec["clusterIP"] = services[0]["spec"]["clusterIP"]
        if draw(st.booleans()):
            # An external IP that is also a load-balancer IP, or another Service's ClusterIP.
            spec["externalIPs"] = [draw(st.sampled_from(["1.2.0.4", services[0]["spec"]["clusterIP"]]))]
        if spec.get("type") == "LoadBalancer" and draw(st.booleans()):
            spec["loadBalancerSourceRanges"] = ["203.0.113.0/24", "203.0.113.0/25", "0.0.0.0/0"][
                : draw(st.integers(1, 3))
            ]
        first = spec["ports"][0]
        if "nodePort" in first and draw(st.booleans()):
            first["nodePort"] = 30000  # the same NodePort in two Services (one Service may not repeat it)
    return objects


def test_broken_scripts_are_refused_so_the_check_can_fail() -> None:
    assert nft_check("table ip svc2rules {\n\tchain x {\n\t\tjump nowhere\n\t}\n}\n").returncode != 0
    assert nft_check("table ip svc2rules {\n\tchain x {\n\t\tbogus\n\t}\n}\n").returncode != 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), CONFIGS, st.sampled_from(["always", "never"]))
def test_every_nftables_ruleset_loads(
    objects: list[dict[str, Any]], config: ProxyConfig, comments: str
) -> None:
    text = nft_text(objects, config, comments=comments)
    result = nft_check(text)
    assert result.returncode == 0, f"nft refused the script: {result.stderr}\n{text}"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(colliding_clusters(), CONFIGS)
def test_colliding_frontends_still_load(objects: list[dict[str, Any]], config: ProxyConfig) -> None:
    text = nft_text(objects, config)
    result = nft_check(text)
    assert result.returncode == 0, f"nft refused the script: {result.stderr}\n{text}"


def test_the_script_replaces_our_table_and_leaves_others_alone() -> None:
    first = nft_text([service(), endpoint_slice()])
    second = nft_text([service("other", clusterIP="172.30.0.99"), endpoint_slice("other")])
    bystander = "table ip bystander {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.1.1.1 }\n\t}\n}\n"
    with (
        tempfile.NamedTemporaryFile("w", suffix=".nft") as a,
        tempfile.NamedTemporaryFile("w", suffix=".nft") as b,
        tempfile.NamedTemporaryFile("w", suffix=".nft") as c,
    ):
        for fh, text in ((a, first), (b, second), (c, bystander)):
            fh.write(text)
            fh.flush()
        script = (
            f"set -e; nft -f {c.name}; nft -c -f {a.name}; nft -f {a.name}; nft -f {a.name}; "
            f"nft -c -f {b.name}; nft -f {b.name}; echo ===; nft list table ip svc2rules; echo ===; "
            "nft list table ip bystander"
        )
        result = nft_in_private_netns(script)
    assert result.returncode == 0, result.stderr
    _, ours, theirs = result.stdout.split("===\n")
    assert "172.30.0.99" in ours and "172.30.0.41" not in ours  # whole replacement, nothing left over
    assert "1.1.1.1" in theirs


@pytest.mark.parametrize("table", ["svc2rules", "kube_proxy-2"])
def test_fresh_and_repeated_loads_with_any_table_name(table: str) -> None:
    text = nft_text([service(), endpoint_slice()], table=table)
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as fh:
        fh.write(text)
        fh.flush()
        result = nft_in_private_netns(f"set -e; nft -f {fh.name}; nft -f {fh.name}; nft list tables")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["table", "ip", table]
