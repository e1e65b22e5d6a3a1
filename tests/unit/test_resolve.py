"""Resolution into the IR: kube-proxy's endpoint categorisation and service filtering."""

from __future__ import annotations

from typing import Any

from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.ir import Plan, ServicePort
from svc2rules.load import RawObject
from svc2rules.model.registry import validate_objects
from svc2rules.resolve import resolve
from tests.conftest import endpoint, endpoint_slice, service

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def plan_of(*objects: dict[str, Any], config: ProxyConfig = CONFIG) -> Plan:
    validated = validate_objects(RawObject("in.yaml", o) for o in objects)
    assert validated.errors == []
    return resolve(validated.objects, config).plan


def only_port(plan: Plan) -> ServicePort:
    assert len(plan.service_ports) == 1
    return plan.service_ports[0]


def addresses(endpoints: tuple[Any, ...]) -> list[str]:
    return [ep.address for ep in endpoints]


def test_one_entry_per_service_port() -> None:
    svc = service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "protocol": "UDP"}])
    plan = plan_of(svc)
    assert [str(sp.key) for sp in plan.service_ports] == ["ns1/svc1:a", "ns1/svc1:b"]
    assert [sp.protocol.value for sp in plan.service_ports] == ["TCP", "UDP"]


def test_ports_match_by_name_and_protocol_not_target_port() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    slices = [
        endpoint_slice(name="a", endpoints=[endpoint("10.180.0.1")], ports=[{"name": "http", "port": 8080}]),
        endpoint_slice(name="b", endpoints=[endpoint("10.180.0.2")], ports=[{"name": "http", "port": 9090}]),
        endpoint_slice(
            name="c",
            endpoints=[endpoint("10.180.0.3")],
            ports=[{"name": "http", "port": 80, "protocol": "UDP"}],
        ),
    ]
    sp = only_port(plan_of(svc, *slices))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080", "10.180.0.2:9090"]


def test_slices_merge_dedupe_and_sort_by_address_text() -> None:
    slices = [
        endpoint_slice(name="a", endpoints=[endpoint("10.180.0.10", node="node2"), endpoint("10.180.0.2")]),
        endpoint_slice(name="b", endpoints=[endpoint("10.180.0.2", node="node2"), endpoint("10.180.0.3")]),
    ]
    sp = only_port(plan_of(service(), *slices))
    # kube-proxy sorts by the "ip:port" string, so .10 sorts before .2.
    assert addresses(sp.cluster_endpoints) == ["10.180.0.10:8080", "10.180.0.2:8080", "10.180.0.3:8080"]
    # A duplicate keeps the local copy.
    assert [ep.is_local for ep in sp.cluster_endpoints] == [False, True, True]


def test_not_ready_endpoints_are_unused_while_any_is_ready() -> None:
    eps = [endpoint("10.180.0.1", ready=True), endpoint("10.180.0.2", ready=False)]
    sp = only_port(plan_of(service(), endpoint_slice(endpoints=eps)))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080"]


def test_serving_terminating_endpoints_are_the_fallback() -> None:
    eps = [
        endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
        endpoint("10.180.0.2", ready=False, serving=False, terminating=True),
        endpoint("10.180.0.3", ready=False),
    ]
    sp = only_port(plan_of(service(), endpoint_slice(endpoints=eps)))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080"]
    assert sp.has_endpoints


def test_fallback_is_not_used_when_a_ready_endpoint_exists() -> None:
    eps = [endpoint("10.180.0.1", ready=False, serving=True, terminating=True), endpoint("10.180.0.2")]
    sp = only_port(plan_of(service(), endpoint_slice(endpoints=eps)))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.2:8080"]


def test_no_endpoints_means_reject() -> None:
    sp = only_port(plan_of(service()))
    assert not sp.has_endpoints and not sp.has_internal_endpoints and not sp.has_external_endpoints


def test_external_policy_local_uses_local_endpoints_for_external_traffic() -> None:
    svc = service(
        type="NodePort", externalTrafficPolicy="Local", ports=[{"name": "p80", "port": 80, "nodePort": 30000}]
    )
    eps = [endpoint("10.180.0.1"), endpoint("10.180.0.2", node="node2")]
    sp = only_port(plan_of(svc, endpoint_slice(endpoints=eps)))
    assert addresses(sp.local_endpoints) == ["10.180.0.1:8080"]
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080", "10.180.0.2:8080"]
    assert addresses(sp.external_endpoints) == ["10.180.0.1:8080"]
    assert addresses(sp.internal_endpoints) == ["10.180.0.1:8080", "10.180.0.2:8080"]
    assert sp.has_external_endpoints


def test_external_policy_local_without_local_endpoints_drops_external_only() -> None:
    svc = service(
        type="NodePort", externalTrafficPolicy="Local", ports=[{"name": "p80", "port": 80, "nodePort": 30000}]
    )
    sp = only_port(plan_of(svc, endpoint_slice(endpoints=[endpoint("10.180.0.2", node="node2")])))
    assert sp.has_endpoints and sp.has_internal_endpoints and not sp.has_external_endpoints


def test_remote_terminating_endpoint_turns_reject_into_drop_for_local_policy() -> None:
    svc = service(internalTrafficPolicy="Local")
    eps = [endpoint("10.180.0.2", node="node2", ready=False, serving=True, terminating=True)]
    sp = only_port(plan_of(svc, endpoint_slice(endpoints=eps)))
    assert sp.has_endpoints and not sp.has_internal_endpoints


def test_internal_policy_local_keeps_only_local_endpoints() -> None:
    eps = [endpoint("10.180.0.1"), endpoint("10.180.0.2", node="node2")]
    sp = only_port(plan_of(service(internalTrafficPolicy="Local"), endpoint_slice(endpoints=eps)))
    assert addresses(sp.local_endpoints) == ["10.180.0.1:8080"]
    assert sp.cluster_endpoints == ()  # an internal-only service never uses the cluster list
    assert addresses(sp.reachable_endpoints) == ["10.180.0.1:8080"]


def test_local_fallback_is_decided_on_this_node_only() -> None:
    svc = service(internalTrafficPolicy="Local")
    eps = [
        endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
        endpoint("10.180.0.2", node="node2"),
    ]
    sp = only_port(plan_of(svc, endpoint_slice(endpoints=eps)))
    assert addresses(sp.local_endpoints) == ["10.180.0.1:8080"]


def test_zone_hints_filter_cluster_endpoints() -> None:
    config = CONFIG.model_copy(update={"node_zone": "a"})
    eps = [
        {**endpoint("10.180.0.1"), "hints": {"forZones": [{"name": "a"}]}},
        {**endpoint("10.180.0.2", node="node2"), "hints": {"forZones": [{"name": "b"}]}},
    ]
    sp = only_port(plan_of(service(), endpoint_slice(endpoints=eps), config=config))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080"]


def test_zone_hints_are_ignored_unless_every_ready_endpoint_has_them() -> None:
    config = CONFIG.model_copy(update={"node_zone": "a"})
    eps = [
        {**endpoint("10.180.0.1"), "hints": {"forZones": [{"name": "a"}]}},
        endpoint("10.180.0.2", node="node2"),
    ]
    sp = only_port(plan_of(service(), endpoint_slice(endpoints=eps), config=config))
    assert len(sp.cluster_endpoints) == 2


def test_headless_external_name_and_foreign_proxy_are_not_proxied_but_recorded() -> None:
    headless = service(name="db", clusterIP="None")
    alias = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "alias", "namespace": "ns1"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }
    foreign = service(name="other")
    foreign["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "other-proxy"}
    plan = plan_of(headless, alias, foreign, endpoint_slice(service_name="db"))
    assert plan.service_ports == ()
    reasons = {r.name: r.skipped for r in plan.services}
    assert reasons == {"alias": "ExternalName", "db": "headless", "other": "service-proxy-name label"}
    db = next(r for r in plan.services if r.name == "db")
    assert [e.ip for e in db.endpoints] == ["10.180.0.1"]


def test_service_proxy_name_label_matching_our_name_is_proxied() -> None:
    svc = service()
    svc["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "svc2rules"}
    config = CONFIG.model_copy(update={"service_proxy_name": "svc2rules"})
    assert len(plan_of(svc, config=config).service_ports) == 1


def test_legacy_endpoints_are_mirrored_and_slices_win() -> None:
    legacy = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "svc1", "namespace": "ns1"},
        "subsets": [
            {
                "addresses": [{"ip": "10.180.0.1", "nodeName": "node1"}],
                "notReadyAddresses": [{"ip": "10.180.0.2"}],
                "ports": [{"name": "p80", "port": 8080}],
            }
        ],
    }
    sp = only_port(plan_of(service(), legacy))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.1:8080"]
    assert sp.cluster_endpoints[0].is_local
    sp = only_port(plan_of(service(), legacy, endpoint_slice(endpoints=[endpoint("10.180.0.9")])))
    assert addresses(sp.cluster_endpoints) == ["10.180.0.9:8080"]


def test_load_balancer_ingress_in_proxy_mode_is_not_captured() -> None:
    status = {
        "loadBalancer": {
            "ingress": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8", "ipMode": "Proxy"}, {"hostname": "x.y"}]
        }
    }
    svc = service(type="LoadBalancer", status=status)
    sp = only_port(plan_of(svc, endpoint_slice()))
    assert sp.load_balancer_ips == ("1.2.3.4",)


def test_dual_stack_service_gets_one_entry_per_family() -> None:
    svc = service(
        clusterIP="172.30.0.41", clusterIPs=["172.30.0.41", "fd00::41"], ipFamilies=["IPv4", "IPv6"]
    )
    slices = [
        endpoint_slice(name="v4"),
        endpoint_slice(name="v6", address_type="IPv6", endpoints=[endpoint("fd00::1")]),
    ]
    plan = plan_of(svc, *slices)
    assert [(sp.family, sp.cluster_ip) for sp in plan.service_ports] == [
        (IPFamily.IPv4, "172.30.0.41"),
        (IPFamily.IPv6, "fd00::41"),
    ]
    assert addresses(plan.service_ports[1].cluster_endpoints) == ["[fd00::1]:8080"]


def test_service_without_cluster_ip_is_not_proxied_and_warned() -> None:
    svc = service()
    del svc["spec"]["clusterIP"]
    validated = validate_objects([RawObject("in.yaml", svc)])
    resolution = resolve(validated.objects, CONFIG)
    assert resolution.plan.service_ports == ()
    assert "spec.clusterIP is not allocated" in str(resolution.warnings[0])


def test_affinity_and_policies_are_carried() -> None:
    svc = service(
        type="LoadBalancer",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        externalTrafficPolicy="Local",
        healthCheckNodePort=32000,
        loadBalancerSourceRanges=[" 203.0.113.0/25 "],
        ports=[{"name": "p80", "port": 80, "nodePort": 30080}],
    )
    sp = only_port(plan_of(svc, endpoint_slice()))
    assert sp.affinity_timeout == 60
    assert sp.health_check_node_port == 32000
    assert sp.source_ranges == ("203.0.113.0/25",)
    assert sp.external_policy_local and not sp.internal_policy_local
    assert sp.node_port == 30080


def test_ir_json_is_canonical_and_order_independent() -> None:
    a = plan_of(
        service(name="a"), service(name="b", clusterIP="172.30.0.42"), endpoint_slice(service_name="a")
    )
    b = plan_of(
        endpoint_slice(service_name="a"), service(name="b", clusterIP="172.30.0.42"), service(name="a")
    )
    assert a.to_json() == b.to_json()
