"""The userspace renderer: which frontend and which client is sent to which proxy port, and
what is REJECTed or DROPped instead (no kernel needed)."""

from __future__ import annotations

import pytest

from svc2rules.api import render
from svc2rules.backends import RenderOptions, available_backends, get_backend
from svc2rules.backends.userspace.layout import Pool, build_layout
from svc2rules.backends.userspace.ports import PortRange
from svc2rules.errors import UsageError
from tests.backends.userspace.helpers import CONFIG, artifact, comments, plan_of, rules
from tests.conftest import endpoint, endpoint_slice, service

PORTALS, NODEPORTS, FILTER = "SVC2R-USERSPACE-PORTALS", "SVC2R-USERSPACE-NODEPORTS", "SVC2R-USERSPACE-FILTER"
DEFAULT_RANGE = PortRange(20000, 29999)


def ports_of(objects: list[dict[str, object]], port_range: PortRange = DEFAULT_RANGE) -> dict[Pool, int]:
    """The proxy ports of the first service port: what the rules must point at."""
    layout = build_layout(plan_of(objects), port_range)
    return {lst.pool: lst.port for lst in layout if lst.service_port.key.name == "svc1"}


def test_the_backend_is_discovered() -> None:
    assert "userspace" in available_backends()
    assert get_backend("userspace").name == "userspace"


def test_cluster_ip_is_redirected_to_the_proxy_port_from_prerouting_and_output() -> None:
    objects = [service(), endpoint_slice()]
    text = artifact(objects).text
    port = ports_of(objects)[Pool.CLUSTER]
    assert rules(text, PORTALS) == [
        f"-m tcp -p tcp -d 172.30.0.41 --dport 80 -j REDIRECT --to-ports {port}",
        f"-m addrtype --dst-type LOCAL -j {NODEPORTS}",
    ]
    jumps = [line for line in text.splitlines() if line.startswith("-I ")]
    assert [j.split()[1] for j in jumps] == ["INPUT", "FORWARD", "OUTPUT", "OUTPUT", "PREROUTING"]
    assert all(j.endswith(f"-j {PORTALS}") for j in jumps[3:])
    assert "MASQUERADE" not in text and "DNAT" not in text


def test_the_proxy_port_is_the_layouts_and_lies_in_the_configured_range() -> None:
    objects = [service(), endpoint_slice()]
    narrow = PortRange(40000, 40009)
    text = artifact(objects, extra={"port_range": "40000-40009"}).text
    port = ports_of(objects, narrow)[Pool.CLUSTER]
    assert port in narrow
    assert f"REDIRECT --to-ports {port}" in text
    assert "svc2rules proxy --port-range 40000-40009" in text


def test_a_specific_bind_address_is_reached_by_dnat() -> None:
    objects = [service(), endpoint_slice()]
    port = ports_of(objects)[Pool.CLUSTER]
    text = artifact(objects, extra={"bind": "192.168.0.2"}).text
    assert f"-j DNAT --to-destination 192.168.0.2:{port}" in text
    assert "REDIRECT" not in text
    assert "--bind 192.168.0.2" in text


@pytest.mark.parametrize("extra", [{"bind": "fd00::1"}, {"bind": "nope"}, {"port_range": "9-1"}])
def test_bad_addressing_is_a_usage_error(extra: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        artifact([service()], extra=extra)


def test_a_service_without_endpoints_is_rejected_in_the_filter_table() -> None:
    text = artifact([service(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080}])]).text
    assert rules(text, FILTER) == [
        "-m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT",
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT",
    ]
    assert comments(text, FILTER) == ["ns1/svc1:p80 has no endpoints"] * 2
    assert rules(text, NODEPORTS) == []
    assert "REDIRECT" not in text


def test_node_ports_and_external_addresses_use_the_cluster_list_by_default() -> None:
    svc = service(
        type="LoadBalancer",
        ports=[{"name": "p80", "port": 80, "nodePort": 30080}],
        externalIPs=["192.168.99.1"],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    )
    objects = [svc, endpoint_slice()]
    text = artifact(objects).text
    port = ports_of(objects)[Pool.CLUSTER]
    assert rules(text, PORTALS)[:3] == [
        f"-m tcp -p tcp -d 172.30.0.41 --dport 80 -j REDIRECT --to-ports {port}",
        f"-m tcp -p tcp -d 192.168.99.1 --dport 80 -j REDIRECT --to-ports {port}",
        f"-m tcp -p tcp -d 1.2.3.4 --dport 80 -j REDIRECT --to-ports {port}",
    ]
    assert rules(text, NODEPORTS) == [f"-m tcp -p tcp --dport 30080 -j REDIRECT --to-ports {port}"]
    assert rules(text, FILTER) == []


def test_external_traffic_policy_local_sends_outside_clients_to_the_local_list() -> None:
    svc = service(
        type="NodePort", externalTrafficPolicy="Local", ports=[{"name": "p80", "port": 80, "nodePort": 30080}]
    )
    eps = [endpoint("10.180.0.1", "node1"), endpoint("10.180.0.2", "node2")]
    objects = [svc, endpoint_slice(endpoints=eps)]
    ports = ports_of(objects)
    cluster, local = ports[Pool.CLUSTER], ports[Pool.LOCAL]
    assert cluster != local
    text = artifact(objects).text
    assert rules(text, NODEPORTS) == [
        f"-s 10.0.0.0/8 -m tcp -p tcp --dport 30080 -j REDIRECT --to-ports {cluster}",
        f"-m addrtype --src-type LOCAL -m tcp -p tcp --dport 30080 -j REDIRECT --to-ports {cluster}",
        f"-m tcp -p tcp --dport 30080 -j REDIRECT --to-ports {local}",
    ]
    layout = build_layout(plan_of(objects), DEFAULT_RANGE)
    lists = {lst.pool: [ep.ip for ep in lst.endpoints] for lst in layout}
    assert lists == {Pool.CLUSTER: ["10.180.0.1", "10.180.0.2"], Pool.LOCAL: ["10.180.0.1"]}


def test_external_traffic_policy_local_without_local_endpoints_drops_outside_clients() -> None:
    svc = service(
        type="NodePort", externalTrafficPolicy="Local", ports=[{"name": "p80", "port": 80, "nodePort": 30080}]
    )
    objects = [svc, endpoint_slice(endpoints=[endpoint("10.180.0.2", "node2")])]
    text = artifact(objects).text
    assert [r.rsplit(" ", 1)[0] for r in rules(text, NODEPORTS)] == [
        "-s 10.0.0.0/8 -m tcp -p tcp --dport 30080 -j REDIRECT --to-ports",
        "-m addrtype --src-type LOCAL -m tcp -p tcp --dport 30080 -j REDIRECT --to-ports",
    ]
    assert rules(text, FILTER) == ["-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP"]
    assert comments(text, FILTER) == ["ns1/svc1:p80 has no local endpoints"]


def test_internal_traffic_policy_local_sends_cluster_ip_traffic_to_the_local_list_or_drops_it() -> None:
    eps = [endpoint("10.180.0.1", "node1"), endpoint("10.180.0.2", "node2")]
    objects = [service(internalTrafficPolicy="Local"), endpoint_slice(endpoints=eps)]
    assert set(ports_of(objects)) == {Pool.LOCAL}
    text = artifact(objects).text
    assert rules(text, PORTALS)[0].endswith(f"--to-ports {ports_of(objects)[Pool.LOCAL]}")
    remote_only = [service(internalTrafficPolicy="Local"), endpoint_slice(endpoints=eps[1:])]
    text = artifact(remote_only).text
    assert rules(text, FILTER) == ["-m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP"]
    assert rules(text, PORTALS) == [f"-m addrtype --dst-type LOCAL -j {NODEPORTS}"]


def test_load_balancer_source_ranges_let_allowed_sources_through_and_drop_the_rest() -> None:
    svc = service(
        type="LoadBalancer",
        ports=[{"name": "p80", "port": 80, "nodePort": 30080}],
        loadBalancerSourceRanges=["203.0.113.0/25", "192.168.0.0/24"],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    )
    objects = [svc, endpoint_slice()]
    port = ports_of(objects)[Pool.CLUSTER]
    text = artifact(objects).text
    lb = [r for r in rules(text, PORTALS) if "-d 1.2.3.4" in r]
    # The node (192.168.0.2) is inside a range, so the LB IP itself is allowed as a source too.
    assert lb == [
        f"-s {src} -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REDIRECT --to-ports {port}"
        for src in ("192.168.0.0/24", "203.0.113.0/25", "1.2.3.4")
    ]
    assert rules(text, FILTER) == ["-m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP"]


def test_source_ranges_with_local_policy_keep_pods_only_where_ranges_and_cluster_overlap() -> None:
    svc = service(
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        ports=[{"name": "p80", "port": 80, "nodePort": 30080}],
        loadBalancerSourceRanges=["10.180.0.0/16", "203.0.113.0/25"],
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    )
    text = artifact([svc, endpoint_slice()]).text
    pod_rules = [r for r in rules(text, PORTALS) if "-d 1.2.3.4" in r and "addrtype" not in r]
    sources = [r.split()[1] for r in pod_rules]
    # Pods in 10.180/16 (in range and cluster) -> Cluster list; 203.0.113/25 has no pods.
    assert sources == ["10.180.0.0/16", "10.180.0.0/16", "203.0.113.0/25"]


def test_udp_service_ports_are_matched_as_udp() -> None:
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}])
    text = artifact([svc, endpoint_slice(ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])]).text
    assert rules(text, PORTALS)[0].startswith("-m udp -p udp -d 172.30.0.41 --dport 53 -j REDIRECT")


def test_node_port_dispatch_is_last_and_honours_node_port_addresses() -> None:
    config = CONFIG.model_copy(update={"node_port_addresses": ("192.168.0.0/24",)})
    svc = service(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080}])
    text = render(plan_of([svc, endpoint_slice()], config), "userspace", RenderOptions()).text
    assert rules(text, PORTALS)[-1] == f"-d 192.168.0.2 -j {NODEPORTS}"
    no_localhost = CONFIG.model_copy(update={"localhost_nodeports": False})
    text = render(plan_of([svc, endpoint_slice()], no_localhost), "userspace", RenderOptions()).text
    assert rules(text, PORTALS)[-1] == f"-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {NODEPORTS}"


def test_ipv6_and_sctp_ports_are_left_out_with_a_warning_and_ipv6_family_is_refused() -> None:
    dual = service(
        ipFamilies=["IPv4", "IPv6"],
        clusterIPs=["172.30.0.41", "fd00::41"],
        ports=[{"name": "p80", "port": 80}, {"name": "s", "port": 99, "protocol": "SCTP"}],
    )
    result = artifact([dual, endpoint_slice()])
    assert any("IPv6" in w for w in result.warnings) and any("SCTP" in w for w in result.warnings)
    assert "fd00" not in result.text and "sctp" not in result.text


def test_a_node_port_inside_the_proxy_range_is_warned_about() -> None:
    svc = service(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080}])
    result = artifact([svc, endpoint_slice()], extra={"port_range": "30000-30999"})
    assert any("30080" in w and "port range" in w for w in result.warnings)
    assert not artifact([svc, endpoint_slice()]).warnings


def test_comments_never_and_chain_prefix() -> None:
    text = artifact([service(), endpoint_slice()], comments="never", chain_prefix="ABCDEFG").text
    chains = [line[1:].split()[0] for line in text.splitlines() if line.startswith(":")]
    assert chains == [
        "ABCDEFG-USERSPACE-FILTER",
        "ABCDEFG-USERSPACE-PORTALS",
        "ABCDEFG-USERSPACE-NODEPORTS",
    ]
    assert max(len(c) for c in chains) <= 28
    body = [line for line in text.splitlines() if line.startswith("-A ")]
    assert body and not any("comment" in line for line in body)


def test_chains_never_collide_with_the_iptables_backend() -> None:
    objects = [
        service(type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080}]),
        endpoint_slice(),
    ]
    mine = {line[1:].split()[0] for line in artifact(objects).text.splitlines() if line.startswith(":")}
    theirs = render_iptables_chains(objects)
    assert mine and not mine & theirs


def render_iptables_chains(objects: list[dict[str, object]]) -> set[str]:
    text = render(plan_of(objects), "iptables", RenderOptions()).text
    return {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}
