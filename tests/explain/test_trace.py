"""explain follows a connection through the IR the way kube-proxy's rules take it: every branch."""

from __future__ import annotations

import math
from typing import Any

import pytest

from svc2rules.explain import Origin, Verdict
from tests.conftest import endpoint, endpoint_slice, service
from tests.explain.helpers import CONFIG, EXTERNAL, NODE, POD, ask, endpoints, plan_of

CIP = "172.30.0.41"
TWO = [endpoint("10.180.0.1"), endpoint("10.180.0.2", node="node2")]


def web(**spec: Any) -> dict[str, Any]:
    return service("web", clusterIP=CIP, ports=[{"name": "http", "port": 80, "targetPort": 8080}], **spec)


def web_slice(eps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return endpoint_slice(
        "web", endpoints=TWO if eps is None else eps, ports=[{"name": "http", "port": 8080}]
    )


def external(type_: str = "LoadBalancer", **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    status = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}} if type_ == "LoadBalancer" else None
    extra: dict[str, Any] = {"status": status} if status else {}
    return service(
        "web", clusterIP=CIP, type=type_, ports=ports, externalIPs=["192.168.99.1"], **extra, **spec
    )


# -- where it comes from -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "origin"),
    [(NODE, Origin.NODE), ("127.0.0.1", Origin.NODE), (POD, Origin.POD), (EXTERNAL, Origin.EXTERNAL)],
)
def test_the_origin_follows_from_the_source_address(src: str, origin: Origin) -> None:
    assert ask(plan_of(web(), web_slice()), src, CIP, 80).origin == origin


def test_from_overrides_the_origin() -> None:
    e = ask(plan_of(web(), web_slice()), POD, CIP, 80, origin=Origin.EXTERNAL)
    assert e.origin == Origin.EXTERNAL and e.origin_reason == "given with --from"


# -- ClusterIP ---------------------------------------------------------------------------------------


def test_a_cluster_ip_dnats_to_every_cluster_endpoint_with_equal_probability() -> None:
    e = ask(plan_of(web(), web_slice()), POD, CIP, 80)
    assert e.verdict == Verdict.DNAT and e.match is not None
    assert (e.match.service_port, e.match.frontend) == ("ns1/web:http", "ClusterIP")
    assert endpoints(e) == {"10.180.0.1:8080", "10.180.0.2:8080"}
    assert [c.probability for c in e.endpoints] == [0.5, 0.5]
    assert [c.local for c in e.endpoints] == [True, False]


@pytest.mark.parametrize(("src", "masq"), [(EXTERNAL, True), (NODE, True), (POD, False)])
def test_cluster_ip_traffic_from_outside_the_cluster_cidr_is_masqueraded(src: str, masq: bool) -> None:
    e = ask(plan_of(web(), web_slice()), src, CIP, 80)
    assert e.masquerade is masq and all(c.masquerade is masq for c in e.endpoints)


def test_masquerade_all_masquerades_pods_too() -> None:
    config = CONFIG.model_copy(update={"masquerade_all": True})
    e = ask(plan_of(web(), web_slice(), config=config), POD, CIP, 80)
    assert e.masquerade and "masqueradeAll" in e.masquerade_reason


def test_without_a_cluster_cidr_nothing_is_masqueraded() -> None:
    config = CONFIG.model_copy(update={"cluster_cidrs": ()})
    e = ask(plan_of(web(), web_slice(), config=config), EXTERNAL, CIP, 80)
    assert e.verdict == Verdict.DNAT and not e.masquerade


def test_a_pod_reaching_itself_is_masqueraded_only_if_it_picks_itself() -> None:
    e = ask(plan_of(web(), web_slice()), "10.180.0.1", CIP, 80)
    by_ip = {c.ip: c for c in e.endpoints}
    assert by_ip["10.180.0.1"].hairpin and by_ip["10.180.0.1"].masquerade
    assert not by_ip["10.180.0.2"].hairpin and not by_ip["10.180.0.2"].masquerade


def test_a_cluster_ip_without_endpoints_rejects() -> None:
    for src in (EXTERNAL, POD, NODE):
        e = ask(plan_of(web()), src, CIP, 80)
        assert e.verdict == Verdict.REJECT and "has no endpoints" in e.reason


def test_internal_traffic_policy_local_uses_local_endpoints_or_drops() -> None:
    local = ask(plan_of(web(internalTrafficPolicy="Local"), web_slice()), POD, CIP, 80)
    assert local.verdict == Verdict.DNAT and endpoints(local) == {"10.180.0.1:8080"}
    remote_only = web_slice([endpoint("10.180.0.2", node="node2")])
    none = ask(plan_of(web(internalTrafficPolicy="Local"), remote_only), POD, CIP, 80)
    assert none.verdict == Verdict.DROP and "no local endpoints" in none.reason


def test_without_ready_endpoints_serving_terminating_ones_are_used_and_said_so() -> None:
    eps = [
        endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
        endpoint("10.180.0.2", ready=False),
    ]
    e = ask(plan_of(web(), web_slice(eps)), POD, CIP, 80)
    assert endpoints(e) == {"10.180.0.1:8080"} and not e.endpoints[0].ready
    assert any("terminating" in s.detail for s in e.steps if s.step == "endpoints")


def test_session_affinity_is_reported_with_its_timeout() -> None:
    svc = web(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    e = ask(plan_of(svc, web_slice()), POD, CIP, 80)
    assert e.affinity_timeout == 600 and any(s.step == "affinity" for s in e.steps)
    assert ask(plan_of(web(), web_slice()), POD, CIP, 80).affinity_timeout is None


# -- external IPs, load balancers, NodePorts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dst", "port", "frontend"),
    [("192.168.99.1", 80, "ExternalIP"), ("1.2.3.4", 80, "LoadBalancer"), (NODE, 30080, "NodePort")],
)
def test_external_traffic_policy_cluster_masquerades_and_uses_every_endpoint(
    dst: str, port: int, frontend: str
) -> None:
    e = ask(plan_of(external(), web_slice()), EXTERNAL, dst, port)
    assert e.verdict == Verdict.DNAT and e.match is not None and e.match.frontend == frontend
    assert e.masquerade and endpoints(e) == {"10.180.0.1:8080", "10.180.0.2:8080"}


def test_external_traffic_policy_local_preserves_the_client_and_uses_local_endpoints() -> None:
    plan = plan_of(external(externalTrafficPolicy="Local"), web_slice())
    for dst, port in (("1.2.3.4", 80), (NODE, 30080)):
        e = ask(plan, EXTERNAL, dst, port)
        assert e.verdict == Verdict.DNAT and not e.masquerade and endpoints(e) == {"10.180.0.1:8080"}


def test_external_traffic_policy_local_short_circuits_pods_and_the_node() -> None:
    plan = plan_of(external(externalTrafficPolicy="Local"), web_slice([endpoint("10.180.0.2", node="node2")]))
    pod = ask(plan, POD, "1.2.3.4", 80)
    assert pod.verdict == Verdict.DNAT and not pod.masquerade and endpoints(pod) == {"10.180.0.2:8080"}
    node = ask(plan, NODE, NODE, 30080)
    assert node.verdict == Verdict.DNAT and node.masquerade and endpoints(node) == {"10.180.0.2:8080"}
    outside = ask(plan, EXTERNAL, "1.2.3.4", 80)
    assert outside.verdict == Verdict.DROP and "no local endpoints" in outside.reason


def test_without_endpoints_external_frontends_reject_except_from_the_node_to_a_remote_address() -> None:
    plan = plan_of(external())
    for dst, port in (("192.168.99.1", 80), ("1.2.3.4", 80), (NODE, 30080)):
        assert ask(plan, EXTERNAL, dst, port).verdict == Verdict.REJECT
    assert ask(plan, NODE, NODE, 30080).verdict == Verdict.REJECT  # a node address: INPUT rejects it
    from_node = ask(plan, NODE, "1.2.3.4", 80)
    assert from_node.verdict == Verdict.NONE and from_node.match is not None


def test_load_balancer_source_ranges_allow_or_drop_by_source() -> None:
    plan = plan_of(external(loadBalancerSourceRanges=["203.0.113.0/25"]), web_slice())
    assert ask(plan, EXTERNAL, "1.2.3.4", 80).verdict == Verdict.DNAT
    denied = ask(plan, "203.0.113.200", "1.2.3.4", 80)
    assert denied.verdict == Verdict.DROP and "loadBalancerSourceRanges" in denied.reason
    assert ask(plan, POD, "1.2.3.4", 80).verdict == Verdict.DROP
    # The ranges guard the load-balancer IPs only.
    assert ask(plan, "203.0.113.200", NODE, 30080).verdict == Verdict.DNAT
    assert ask(plan, "203.0.113.200", "192.168.99.1", 80).verdict == Verdict.DNAT


def test_a_node_ip_inside_the_ranges_also_allows_the_load_balancer_ip_as_source() -> None:
    plan = plan_of(external(loadBalancerSourceRanges=["192.168.0.0/24"]), web_slice())
    assert ask(plan, "1.2.3.4", "1.2.3.4", 80, origin=Origin.EXTERNAL).verdict == Verdict.DNAT
    other = plan_of(external(loadBalancerSourceRanges=["203.0.113.0/25"]), web_slice())
    assert ask(other, "1.2.3.4", "1.2.3.4", 80, origin=Origin.EXTERNAL).verdict == Verdict.DROP


def test_a_node_port_is_on_node_addresses_only() -> None:
    plan = plan_of(external("NodePort"), web_slice())
    assert ask(plan, EXTERNAL, "192.168.99.50", 30080).verdict == Verdict.NONE
    wrong_port = ask(plan, EXTERNAL, NODE, 30081)
    assert wrong_port.verdict == Verdict.NONE and "node itself" in wrong_port.reason


def test_node_port_addresses_limit_the_addresses_node_ports_are_on() -> None:
    config = CONFIG.model_copy(
        update={"node_ips": ("192.168.0.2", "10.180.255.254"), "node_port_addresses": ("192.168.0.0/24",)}
    )
    plan = plan_of(external("NodePort"), web_slice(), config=config)
    assert ask(plan, EXTERNAL, NODE, 30080).verdict == Verdict.DNAT
    assert ask(plan, POD, "10.180.255.254", 30080).verdict == Verdict.NONE


def test_localhost_node_ports_exist_in_the_iptables_backend_only() -> None:
    plan = plan_of(external("NodePort"), web_slice())
    iptables = ask(plan, "127.0.0.1", "127.0.0.1", 30080)
    assert iptables.verdict == Verdict.DNAT and iptables.masquerade
    nftables = ask(plan, "127.0.0.1", "127.0.0.1", 30080, backend="nftables")
    assert nftables.verdict == Verdict.NONE and any("loopback" in n for n in nftables.notes)
    config = CONFIG.model_copy(update={"localhost_nodeports": False})
    off = ask(plan_of(external("NodePort"), web_slice(), config=config), "127.0.0.1", "127.0.0.1", 30080)
    assert off.verdict == Verdict.NONE


# -- nothing matches ---------------------------------------------------------------------------------


def test_no_match_says_what_the_address_does_have() -> None:
    e = ask(plan_of(web(), web_slice()), POD, CIP, 81)
    assert e.verdict == Verdict.NONE and e.match is None
    assert any("ClusterIP of ns1/web:http on 80/TCP" in n for n in e.notes)
    udp = ask(plan_of(web(), web_slice()), POD, CIP, 80, proto="UDP")
    assert udp.verdict == Verdict.NONE


def test_no_match_names_services_that_are_not_proxied() -> None:
    other = service("other", clusterIP=CIP)
    other["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "cilium"}
    e = ask(plan_of(other, endpoint_slice("other")), POD, CIP, 80)
    assert e.verdict == Verdict.NONE
    assert any("ns1/other" in n and "service-proxy-name" in n for n in e.notes)


def test_a_frontend_claimed_twice_goes_to_the_first_service_port_and_says_so() -> None:
    a = service(
        "a", clusterIP="172.30.0.1", externalIPs=["192.168.99.1"], ports=[{"name": "http", "port": 80}]
    )
    b = service(
        "b", clusterIP="172.30.0.2", externalIPs=["192.168.99.1"], ports=[{"name": "http", "port": 80}]
    )
    plan = plan_of(
        a,
        b,
        endpoint_slice("a", ports=[{"name": "http", "port": 8080}]),
        endpoint_slice("b", ports=[{"name": "http", "port": 8080}]),
    )
    e = ask(plan, EXTERNAL, "192.168.99.1", 80)
    assert e.match is not None and e.match.service == "a"
    assert any("ns1/b:http claims the same" in n for n in e.notes)


# -- contract ----------------------------------------------------------------------------------------


def test_probabilities_of_the_candidates_add_up_to_one() -> None:
    eps = [endpoint(f"10.180.0.{i}") for i in range(1, 8)]
    e = ask(plan_of(web(), web_slice(eps)), POD, CIP, 80)
    assert len(e.endpoints) == 7 and math.isclose(sum(c.probability for c in e.endpoints), 1.0)


def test_addresses_are_compared_in_canonical_form_and_families_must_agree() -> None:
    svc = service("v6", clusterIP="fd00::10", clusterIPs=["fd00::10"], ipFamilies=["IPv6"])
    e = ask(
        plan_of(svc, endpoint_slice("v6", endpoints=[endpoint("fd00:180::1")], address_type="IPv6")),
        "fd00:180::9",
        "fd00:0::10",
        80,
    )
    assert e.verdict == Verdict.DNAT and e.query.dst == "fd00::10"
    with pytest.raises(ValueError, match="different IP families"):
        ask(plan_of(web()), "fd00::1", CIP, 80)


def test_backends_explain_does_not_model_get_a_note() -> None:
    plan = plan_of(web(), web_slice())
    assert any("may differ" in n for n in ask(plan, POD, CIP, 80, backend="userspace").notes)
    assert not ask(plan, POD, CIP, 80).notes


def test_a_node_port_without_node_addresses_to_match_it_says_what_is_missing() -> None:
    config = CONFIG.model_copy(update={"node_ips": ()})
    e = ask(plan_of(external("NodePort"), web_slice(), config=config), EXTERNAL, NODE, 30080)
    assert e.verdict == Verdict.NONE and any("--node-ip" in n for n in e.notes)
