"""The nftables renderer: layout, decisions, determinism, options (no kernel needed)."""

from __future__ import annotations

import difflib
import random
import re
from typing import Any

import pytest

from bench import synth
from svc2rules.backends import available_backends, get_backend
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError
from tests.backends.nftables.helpers import artifact, nft_text
from tests.conftest import endpoint, endpoint_slice, service


def elements(text: str, name: str) -> list[str]:
    """The element lines of one set or map, without the trailing comma."""
    match = re.search(rf"^\t(?:set|map) {re.escape(name)} \{{\n(.*?)^\t\}}", text, re.M | re.S)
    assert match, f"no set or map {name}"
    body = match.group(1)
    inner = re.search(r"elements = \{\n(.*?)\t\t\}", body, re.S)
    return [line.strip().rstrip(",") for line in inner.group(1).splitlines()] if inner else []


def chain(text: str, name: str) -> list[str]:
    match = re.search(rf"^\tchain {re.escape(name)} \{{\n(.*?)^\t\}}", text, re.M | re.S)
    assert match, f"no chain {name}"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def objects_count(text: str) -> tuple[int, int]:
    return len(re.findall(r"^\tchain ", text, re.M)), len(re.findall(r"^\t(?:set|map) ", text, re.M))


def test_the_backend_is_discovered() -> None:
    assert "nftables" in available_backends()
    assert get_backend("nftables").name == "nftables"


def test_one_transaction_replacing_only_our_table() -> None:
    text = nft_text([service(), endpoint_slice()], table="mytable")
    statements = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "\t", "}"))]
    assert statements == ["table ip mytable", "delete table ip mytable", "table ip mytable {"]
    assert "flush ruleset" not in text
    assert sum(ln.startswith("table ") or ln.startswith("delete ") for ln in text.splitlines()) == 3


@pytest.mark.parametrize("name", ["", "1abc", "a b", "x;flush ruleset", "a" * 65, 'a"'])
def test_bad_table_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError):
        artifact([service()], table=name)


def test_ipv6_ports_are_skipped_with_a_warning() -> None:
    dual = service(ipFamilies=["IPv4", "IPv6"], clusterIPs=["172.30.0.41", "fd00::41"])
    result = artifact([dual, endpoint_slice()])
    assert any("IPv6" in w for w in result.warnings)
    assert "fd00" not in result.text


def test_cluster_ip_dispatch_and_pool() -> None:
    text = nft_text(
        [service(), endpoint_slice(endpoints=[endpoint("10.180.0.1"), endpoint("10.180.0.2", "node2")])]
    )
    assert elements(text, "service-ips") == [
        '172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : jump cluster-ip'
    ]
    assert elements(text, "service-pools") == [
        '172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : goto service-tcp-pool-2'
    ]
    assert elements(text, "service-tcp-endpoints-2") == [
        '172.30.0.41 . 80 . 0 comment "ns1/svc1:p80" : 10.180.0.1 . 8080',
        '172.30.0.41 . 80 . 1 comment "ns1/svc1:p80" : 10.180.0.2 . 8080',
    ]
    assert chain(text, "service-tcp-pool-2")[-1] == (
        "meta l4proto tcp dnat ip to ip daddr . th dport . numgen random mod 2 map @service-tcp-endpoints-2"
    )
    assert elements(text, "hairpin") == ["10.180.0.1 . 10.180.0.1", "10.180.0.2 . 10.180.0.2"]
    assert "ip saddr != 10.0.0.0/8 jump mark-for-masquerade" in chain(text, "cluster-ip")[1]


def test_no_endpoints_rejects_and_no_local_endpoints_drops() -> None:
    empty = service("empty", clusterIP="172.30.0.1", type="NodePort", externalIPs=["192.168.99.1"])
    empty["spec"]["ports"][0]["nodePort"] = 30001
    local = service("local", clusterIP="172.30.0.2", internalTrafficPolicy="Local")
    text = nft_text([empty, local, endpoint_slice("local", endpoints=[endpoint("10.180.0.9", "node2")])])
    assert elements(text, "no-endpoint-cluster-ips") == [
        '172.30.0.1 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain',
        '172.30.0.2 . tcp . 80 comment "ns1/local:p80" : drop',
    ]
    assert elements(text, "no-endpoint-external-ips") == [
        '192.168.99.1 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain'
    ]
    assert elements(text, "no-endpoint-nodeports") == [
        'tcp . 30001 comment "ns1/empty:p80" : goto reject-chain'
    ]
    assert elements(text, "service-ips") == []


def test_external_traffic_policy_local_uses_local_pool_and_cluster_shortcut() -> None:
    svc = service(type="NodePort", externalTrafficPolicy="Local")
    svc["spec"]["ports"][0]["nodePort"] = 30080
    eps = [endpoint("10.180.0.1"), endpoint("10.180.0.2", "node2")]
    text = nft_text([svc, endpoint_slice(endpoints=eps)])
    assert elements(text, "service-nodeports") == ['tcp . 30080 comment "ns1/svc1:p80" : jump nodeport-local']
    assert elements(text, "nodeport-pools") == [
        'tcp . 30080 comment "ns1/svc1:p80" : goto nodeport-tcp-pool-1'
    ]
    assert elements(text, "nodeport-tcp-endpoints-1") == [
        '30080 . 0 comment "ns1/svc1:p80" : 10.180.0.1 . 8080'
    ]
    assert elements(text, "nodeport-shortcut-pools") == [
        'tcp . 30080 comment "ns1/svc1:p80" : goto nodeport-shortcut-tcp-pool-2'
    ]
    rules = chain(text, "nodeport-local")
    assert rules[1].startswith("ip saddr 10.0.0.0/8 goto nodeport-shortcut")
    assert rules[2].startswith("fib saddr type local jump mark-for-masquerade")
    assert rules[3].startswith("fib saddr type local goto nodeport-shortcut")


def test_load_balancer_source_ranges_are_merged_and_allow_the_vip_when_the_node_is_inside() -> None:
    svc = service(
        type="LoadBalancer",
        loadBalancerSourceRanges=["203.0.113.0/25", "203.0.113.0/26", "203.0.113.128/25", "192.168.0.0/24"],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}]}},
    )
    svc["spec"]["ports"][0]["nodePort"] = 30080
    text = nft_text([svc, endpoint_slice()])
    allow = [e.split(" comment")[0] for e in elements(text, "firewall-allow")]
    assert allow == [
        "1.2.3.4 . tcp . 80 . 1.2.3.4",
        "1.2.3.4 . tcp . 80 . 5.6.7.8",
        "1.2.3.4 . tcp . 80 . 192.168.0.0/24",
        "1.2.3.4 . tcp . 80 . 203.0.113.0/24",
        "5.6.7.8 . tcp . 80 . 1.2.3.4",
        "5.6.7.8 . tcp . 80 . 5.6.7.8",
        "5.6.7.8 . tcp . 80 . 192.168.0.0/24",
        "5.6.7.8 . tcp . 80 . 203.0.113.0/24",
    ]
    assert [e.split(" comment")[0] for e in elements(text, "firewall-ips")] == [
        "1.2.3.4 . tcp . 80",
        "5.6.7.8 . tcp . 80",
    ]
    assert all(
        e.endswith("jump firewall") for e in elements(text, "service-ips") if e.startswith(("1.", "5."))
    )


def test_firewall_only_when_the_service_has_endpoints() -> None:
    # iptables mode: no endpoints -> REJECT, and no LB firewall (kube-proxy's nftables mode differs).
    svc = service(
        type="LoadBalancer",
        loadBalancerSourceRanges=["203.0.113.0/25"],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    )
    text = nft_text([svc])
    assert elements(text, "firewall-ips") == []
    assert elements(text, "no-endpoint-external-ips") == [
        '1.2.3.4 . tcp . 80 comment "ns1/svc1:p80" : goto reject-chain'
    ]


def test_session_affinity_objects_exist_only_when_used() -> None:
    plain = nft_text([service(), endpoint_slice()])
    assert "affinity" not in plain
    sticky = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    text = nft_text([sticky, endpoint_slice()])
    assert elements(text, "affinity-services") == [
        '172.30.0.41 . tcp . 80 . 10.180.0.1 . 8080 comment "ns1/svc1:p80" : goto affinity-record-60'
    ]
    assert "timeout 60s : ip daddr . th dport" in chain(text, "affinity-record-60")[-1]
    assert "dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @affinity" in chain(
        text, "cluster-ip"
    )


def test_masquerade_all_and_no_cluster_cidr() -> None:
    everything = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), masquerade_all=True)
    assert chain(nft_text([service(), endpoint_slice()], everything), "cluster-ip")[1].startswith(
        "jump mark-for-masquerade"
    )
    nothing = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",))
    text = nft_text([service(), endpoint_slice()], nothing)
    assert not any("mark-for-masquerade" in r for r in chain(text, "cluster-ip"))
    assert not any("ip saddr" in r for r in chain(text, "external-local"))


def test_mark_bit_and_conntrack_liberal() -> None:
    config = ProxyConfig(node_name="node1", masquerade_bit=3, conntrack_tcp_be_liberal=True)
    text = nft_text([service(), endpoint_slice()], config)
    assert "meta mark set meta mark | 0x8" in chain(text, "mark-for-masquerade")
    # kube-proxy's nftables mode has no `ct state invalid drop`, whatever tcpBeLiberal says (apply
    # sets the sysctl instead): forwarded traffic is never judged by conntrack state here.
    assert not any("invalid" in r for r in chain(text, "filter-forward"))
    assert not any("invalid" in r for r in chain(nft_text([service()]), "filter-forward"))


def test_node_port_addresses_never_include_loopback() -> None:
    config = ProxyConfig(
        node_name="node1",
        node_ips=("192.168.0.2", "10.1.0.2"),
        node_port_addresses=("192.168.0.0/16", "127.0.0.0/8"),
    )
    text = nft_text([service(), endpoint_slice()], config)
    assert elements(text, "nodeport-ips") == ["192.168.0.2"]
    assert chain(text, "services")[-1].startswith("ip daddr @nodeport-ips meta l4proto . th dport vmap")
    # Unset: kube-proxy's nftables mode reads `primary` (the node IP), or every local address but
    # loopback when no node IP is known (kube-proxy's MatchAll for a family without a CIDR).
    unknown_node = nft_text([service(), endpoint_slice()], ProxyConfig(node_name="node1"))
    assert "fib daddr type local ip daddr != 127.0.0.0/8" in chain(unknown_node, "services")[-1]
    primary = nft_text(
        [service(), endpoint_slice()], ProxyConfig(node_name="node1", node_ips=config.node_ips)
    )
    assert elements(primary, "nodeport-ips") == ["192.168.0.2"]
    assert chain(primary, "services")[-1].startswith("ip daddr @nodeport-ips meta l4proto . th dport vmap")
    everywhere = ProxyConfig(node_name="node1", node_ips=config.node_ips, node_port_addresses=("0.0.0.0/0",))
    assert "fib daddr type local" in chain(nft_text([service()], everywhere), "services")[-1]
    nowhere = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), node_port_addresses=("10.9.0.0/16",))
    assert not any("service-nodeports" in r for r in chain(nft_text([service()], nowhere), "services"))


def test_duplicate_frontends_keep_the_first_service_port_and_warn() -> None:
    a = service("a", clusterIP="172.30.0.7")
    b = service("b", clusterIP="172.30.0.7")
    result = artifact([a, b, endpoint_slice("a"), endpoint_slice("b", endpoints=[endpoint("10.180.0.2")])])
    assert elements(result.text, "service-ips") == [
        '172.30.0.7 . tcp . 80 comment "ns1/a:p80" : jump cluster-ip'
    ]
    assert any("ns1/b:p80" in w and "service-ips" in w for w in result.warnings)


def test_tcp_and_udp_on_the_same_port_are_distinct() -> None:
    svc = service(
        ports=[{"name": "t", "port": 53, "protocol": "TCP"}, {"name": "u", "port": 53, "protocol": "UDP"}]
    )
    sl = endpoint_slice(
        ports=[{"name": "t", "port": 5353, "protocol": "TCP"}, {"name": "u", "port": 5353, "protocol": "UDP"}]
    )
    keys = [e.split(" comment")[0] for e in elements(nft_text([svc, sl]), "service-ips")]
    assert keys == ["172.30.0.41 . tcp . 53", "172.30.0.41 . udp . 53"]


def test_comment_modes() -> None:
    objs = [service(), endpoint_slice()]
    assert 'comment "ns1/svc1:p80"' in nft_text(objs, comments="always")
    never = nft_text(objs, comments="never")
    assert "comment" not in never.split("{", 1)[1]
    auto_small = nft_text(objs, comments="auto")
    assert 'comment "ns1/svc1:p80"' in auto_small


def test_auto_comments_are_dropped_for_large_clusters() -> None:
    big = list(synth.objects(110, 10))  # 1100 endpoints > kube-proxy's large-cluster threshold
    text = nft_text(big, comments="auto")
    assert 'comment "ns-' not in text
    assert 'comment "ClusterIP, external IP' in text  # our own wording stays


def test_no_jumps_leaves_every_chain_unhooked() -> None:
    text = nft_text([service(), endpoint_slice()], jumps=False)
    assert " hook " not in text


def test_object_count_does_not_grow_with_services() -> None:
    small = nft_text(list(synth.objects(20, 10)), comments="never")
    large = nft_text(list(synth.objects(600, 10)), comments="never")
    assert objects_count(small) == objects_count(large)
    assert len(elements(large, "service-tcp-endpoints-10")) == 6000


def test_input_order_does_not_matter() -> None:
    objs = list(synth.objects(30, 3))
    objs.append(service("z", namespace="ns-00", clusterIP="172.16.9.9", externalIPs=["192.168.99.4"]))
    expected = nft_text(objs)
    for seed in range(5):
        shuffled = list(objs)
        random.Random(seed).shuffle(shuffled)
        assert nft_text(shuffled) == expected


def _diff(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]


def test_changing_one_service_changes_only_its_element_lines() -> None:
    objs: list[dict[str, Any]] = list(synth.objects(50, 3))
    before = nft_text(objs)
    changed = [dict(o) for o in objs]
    slice_17 = next(
        o for o in changed if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == "svc-00017-abcde"
    )
    dropped = slice_17["endpoints"][2]["addresses"][0]
    slice_17["endpoints"] = [*slice_17["endpoints"][:2], endpoint("10.250.0.1", "node2")]
    lines = _diff(before, nft_text(changed))
    assert len(lines) == 4, lines  # one endpoint element out and in, one hairpin pair out and in
    # Hairpin pairs belong to endpoint addresses, not to one Service: they carry no comment.
    markers = ("ns-17/svc-00017:http", f"{dropped} . {dropped}", "10.250.0.1 . 10.250.0.1")
    assert all(any(m in line for m in markers) for line in lines), lines


def test_every_element_is_on_its_own_line_and_sorted() -> None:
    objs = list(synth.objects(40, 2))
    text = nft_text(objs, comments="never")
    entries = elements(text, "service-ips")
    assert len(entries) == 40
    ips = [tuple(int(x) for x in e.split(" . ")[0].split(".")) for e in entries]
    assert ips == sorted(ips)


def test_shared_hairpin_pairs_are_ordered_by_address() -> None:
    a = service("a", clusterIP="172.30.0.1")
    b = service("b", clusterIP="172.30.0.2")
    text = nft_text(
        [
            a,
            b,
            endpoint_slice("a", endpoints=[endpoint("10.180.0.9"), endpoint("10.180.0.10")]),
            endpoint_slice("b", endpoints=[endpoint("10.180.0.2"), endpoint("10.180.0.9")]),
        ]
    )
    assert elements(text, "hairpin") == [
        "10.180.0.2 . 10.180.0.2",
        "10.180.0.9 . 10.180.0.9",
        "10.180.0.10 . 10.180.0.10",
    ]
