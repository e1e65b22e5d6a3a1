"""Health as kube-proxy tells it: /healthz and /livez from the sync timestamps, the node's
eligibility, and the load balancers' per-Service health check (status, body, local count)."""

from __future__ import annotations

import json

from svc2rules.agent.health import ProxyHealth, go_time, health_check_of, service_body
from svc2rules.ir import Endpoint, Protocol, ServicePort, ServicePortKey
from svc2rules.resolve.plan import ServiceResolution


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_proxy_is_healthy_while_starting_and_once_synced() -> None:
    clock = Clock()
    health = ProxyHealth(timeout=60, clock=clock)
    health.queued()
    clock.now += 600
    assert health.healthy()  # nothing synced yet: starting
    health.updated()
    assert health.healthy()


def test_an_update_waiting_longer_than_the_timeout_makes_it_unhealthy() -> None:
    clock = Clock()
    health = ProxyHealth(timeout=60, clock=clock)
    health.updated()
    health.queued()
    clock.now += 59
    assert health.healthy()
    health.queued()  # a later change does not move the oldest one
    clock.now += 2
    assert not health.healthy()
    assert health.answer(node=False).status == 503
    health.updated()
    assert health.healthy()


def test_healthz_also_fails_while_the_node_is_being_deleted_livez_does_not() -> None:
    health = ProxyHealth(timeout=60, clock=Clock())
    health.sync_node(
        {"metadata": {"name": "node1"}, "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler"}]}}
    )
    healthz, livez = health.answer(node=True), health.answer(node=False)
    assert (healthz.status, livez.status) == (503, 200)
    assert json.loads(healthz.body)["nodeEligible"] is False
    health.sync_node({"metadata": {"name": "node1"}})
    assert health.answer(node=True).status == 200
    health.sync_node({"metadata": {"name": "node1", "deletionTimestamp": "2024-01-01T00:00:00Z"}})
    assert health.answer(node=True).status == 503
    health.sync_node(None)
    assert health.answer(node=True).status == 503


def test_the_healthz_body_is_kube_proxys() -> None:
    clock = Clock()
    clock.now = 1_700_000_000.25
    health = ProxyHealth(timeout=60, clock=clock)
    response = health.answer(node=True)
    assert response.body == (
        b'{"lastUpdated": "2023-11-14 22:13:20.25 +0000 UTC","currentTime": '
        b'"2023-11-14 22:13:20.25 +0000 UTC", "nodeEligible": true}'
    )
    assert response.headers == {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}
    assert go_time(1_700_000_000.0) == "2023-11-14 22:13:20 +0000 UTC"


def test_the_service_health_body_is_kube_proxys_template() -> None:
    assert service_body("shop", "web", 2, True) == (
        b'{\n\t"service": {\n\t\t"namespace": "shop",\n\t\t"name": "web"\n\t},\n'
        b'\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}'
    )


def _port(name: str, *local: Endpoint, health: int = 32000) -> ServicePort:
    from svc2rules.family import IPFamily

    return ServicePort(
        key=ServicePortKey("shop", "web", name, Protocol.TCP),
        family=IPFamily.IPv4,
        cluster_ip="172.30.0.1",
        port=80,
        health_check_node_port=health,
        local_endpoints=local,
    )


def _resolution(*ports: ServicePort) -> ServiceResolution:
    from svc2rules.ir import ServiceRecord

    record = ServiceRecord("shop", "web", "LoadBalancer", ("172.30.0.1",), False, None, (), (), None)
    return ServiceResolution(ports, record)


def test_the_local_count_is_of_distinct_ready_ips_over_every_port() -> None:
    a = Endpoint("10.0.0.1", 8080, True, True, False, True)
    a_other_port = Endpoint("10.0.0.1", 8443, True, True, False, True)
    terminating = Endpoint("10.0.0.2", 8080, False, True, True, True)
    check = health_check_of(_resolution(_port("http", a, terminating), _port("https", a_other_port)))
    assert check is not None and (check.port, check.local_endpoints) == (32000, 1)


def test_a_service_without_a_health_check_port_has_no_server() -> None:
    assert health_check_of(_resolution(_port("http", health=0))) is None
    assert health_check_of(None) is None
