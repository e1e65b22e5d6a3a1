"""The userspace proxy mode with real traffic: REDIRECT rules from `svc2rules compile --backend
userspace` loaded in the node, `svc2rules proxy` running there, probes from outside, pods and
the node itself.

Every endpoint sees a node address as the source: the proxy opens its own connection to the
endpoint. That is inherent to the userspace mode (kube-proxy's did the same), so these
scenarios expect `masqueraded` where the iptables scenarios expect the client's address.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.userspace.process import PROCESS_DEADLINE

from .agents import Listeners
from .lab import Lab
from .manifests import Ep, endpoint_slice, port, service
from .probe import Answered, Dropped, Origin, Probe, Rejected, Sink
from .scenario import assert_uniform, eps
from .topology import EXT_CLIENTS_IN_RANGE, NODE_IP, NODE_PODS_IP, POD_CLIENTS
from .userspace_proxy import Conversation, EchoEndpoint, LabProxy

pytestmark = [pytest.mark.root, pytest.mark.lab]

POD = [f"10.180.0.{i}" for i in range(1, 9)]
NO_SUCH_POD = "10.180.0.99"  # routed to the pods namespace, which owns no such address: silence
ORIGINS: tuple[Origin, ...] = ("ext", "pod", "node")
VIP = "172.30.0.10"


@pytest.fixture
def proxy(lab: Lab, tmp_path: Path) -> Iterator[LabProxy]:
    the_proxy = LabProxy(lab, tmp_path)
    yield the_proxy
    the_proxy.close()


def web(*endpoints: Ep, target: int = 8080, **kw: object) -> list[dict[str, object]]:
    return [
        service("web", cluster_ip=VIP, ports=[port("http", 80, target)], **kw),  # type: ignore[arg-type]
        endpoint_slice("web", list(endpoints), [("http", target)]),
    ]


def test_every_frontend_reaches_every_endpoint_through_the_proxy(lab: Lab, proxy: LabProxy) -> None:
    lab.add_pods(POD[:4], [8080])
    endpoints = [Ep(POD[0]), Ep(POD[1]), Ep(POD[2], local=False), Ep(POD[3], local=False)]
    proxy.start(
        service(
            "web",
            type="LoadBalancer",
            cluster_ip=VIP,
            external_ips=["192.168.99.10"],
            lb_ips=["1.2.3.4"],
            ports=[port("http", 80, 8080, node_port=30080)],
        ),
        endpoint_slice("web", endpoints, [("http", 8080)]),
    )
    n = 40
    results = lab.probe_many(
        [
            *(Probe(o, VIP, 80, count=n) for o in ORIGINS),
            Probe("ext", "192.168.99.10", 80, count=n),
            Probe("ext", "1.2.3.4", 80, count=n),
            Probe("ext", NODE_IP, 30080, count=n),
            Probe("pod", NODE_PODS_IP, 30080, count=n),
            Probe("node", "127.0.0.1", 30080, count=n),
        ]
    )
    for r in results:
        assert r.all(Answered) and r.masqueraded, r.summary()
        assert_uniform(r.endpoints, eps(POD[:4], 8080), r.summary())
    # 320 clients at once keep the proxy busy; no live endpoint may have been taken for dead.
    assert proxy.process is not None
    assert not [line for line in proxy.process.log if "failed" in line], proxy.process.log


def test_udp_is_relayed_and_answered_from_the_service_address(lab: Lab, proxy: LabProxy) -> None:
    lab.add_pods(POD[:2], [5353])
    proxy.start(
        service(
            "dns",
            type="NodePort",
            cluster_ip="172.30.0.53",
            ports=[port("dns", 53, 5353, "UDP", node_port=30053)],
        ),
        endpoint_slice("dns", [Ep(POD[0]), Ep(POD[1], local=False)], [("dns", 5353, "UDP")]),
    )
    # A probe's UDP socket is connected: it takes a reply only from the address it sent to.
    results = lab.probe_many(
        [
            *(Probe(o, "172.30.0.53", 53, "udp", count=40) for o in ORIGINS),
            Probe("ext", NODE_IP, 30053, "udp", count=40),
        ]
    )
    for r in results:
        assert r.all(Answered) and r.masqueraded, r.summary()
        assert_uniform(r.endpoints, eps(POD[:2], 5353), r.summary())


def test_client_ip_affinity_keeps_each_client_on_one_endpoint(lab: Lab, proxy: LabProxy) -> None:
    lab.add_pods(POD[:3], [8080])
    proxy.start(*web(Ep(POD[0]), Ep(POD[1]), Ep(POD[2]), affinity_timeout=600))
    ext_clients, pod_clients = EXT_CLIENTS_IN_RANGE[:6], POD_CLIENTS[:6]
    ext, pod = lab.probe_many(
        [
            Probe("ext", VIP, 80, src=ext_clients, count=36),
            Probe("pod", VIP, 80, src=pod_clients, count=36),
        ]
    )
    for r in (ext, pod):
        assert r.all(Answered), r.summary()
        per_client = r.by_source()
        assert all(len(seen) == 1 for seen in per_client.values()), per_client
        assert len({ep for seen in per_client.values() for ep in seen}) > 1, per_client


def test_dead_endpoints_are_routed_around_without_a_failed_connection(lab: Lab, proxy: LabProxy) -> None:
    lab.add_pods(POD[:3], [8080])
    stopping = Listeners(lab.topo.workers["pods"], "pod")
    stopping.ensure({8082})
    proxy.start(
        service("web", cluster_ip=VIP, ports=[port("http", 80, "web")]),
        # POD1:8081 refuses (no listener), NO_SUCH_POD never answers, POD2:8082 is stopped below.
        endpoint_slice("web", [Ep(POD[0]), Ep(NO_SUCH_POD)], [("http", 8080)], suffix="a"),
        endpoint_slice("web", [Ep(POD[1])], [("http", 8081)], suffix="b"),
        endpoint_slice("web", [Ep(POD[2])], [("http", 8082)], suffix="c"),
    )
    try:
        before = lab.probe_many([Probe(o, VIP, 80, count=30) for o in ORIGINS])
        for r in before:
            assert r.all(Answered), r.summary()
            assert r.endpoint_set == {f"{POD[0]}:8080", f"{POD[2]}:8082"}, r.summary()
    finally:
        stopping.close()
    after = lab.probe_many([Probe(o, VIP, 80, count=30) for o in ORIGINS])
    for r in after:
        assert r.all(Answered) and r.endpoint_set == {f"{POD[0]}:8080"}, r.summary()


def test_sighup_switches_endpoints_while_an_established_connection_stays_up(
    lab: Lab, proxy: LabProxy
) -> None:
    lab.add_pods(POD[:2], [8080])
    echo = EchoEndpoint(lab.topo.workers["pods"], POD[0], 7000)
    talk: Conversation | None = None
    try:
        proxy.start(*web(Ep(POD[0]), target=7000))
        talk = Conversation(lab.topo.workers["ext"], EXT_CLIENTS_IN_RANGE[0], VIP, 80)
        assert talk.say("hello") == f"{POD[0]}:7000 {NODE_PODS_IP} hello"
        line = proxy.reload(*web(Ep(POD[1]), target=8080))
        assert "1 with new endpoints" in line, line
        assert talk.say("still there") == f"{POD[0]}:7000 {NODE_PODS_IP} still there"
        for r in lab.probe_many([Probe(o, VIP, 80, count=20) for o in ORIGINS]):
            assert r.all(Answered) and r.endpoint_set == {f"{POD[1]}:8080"}, r.summary()
        assert talk.say("bye") == f"{POD[0]}:7000 {NODE_PODS_IP} bye"
    finally:
        if talk is not None:
            talk.close()
        echo.close()


def test_sighup_with_apply_rules_opens_new_service_ports_and_closes_removed_ones(
    lab: Lab, proxy: LabProxy
) -> None:
    lab.add_pods(POD[:2], [8080])

    def svc(name: str, ip: str, pod: str) -> list[dict[str, object]]:
        return [
            service(name, cluster_ip=ip, ports=[port("http", 80, 8080)]),
            endpoint_slice(name, [Ep(pod)], [("http", 8080)]),
        ]

    proxy.start(*svc("a", "172.30.0.20", POD[0]), apply_rules=True)
    (a,) = lab.probe_many([Probe("ext", "172.30.0.20", 80, count=5)])
    assert a.all(Answered) and a.endpoint_set == {f"{POD[0]}:8080"}, a.summary()
    line = proxy.reload(*svc("b", "172.30.0.21", POD[1]))
    assert "1 opened" in line and "1 closed" in line, line
    a, b = lab.probe_many(
        [
            Probe("ext", "172.30.0.20", 80, count=5),
            Probe("ext", "172.30.0.21", 80, count=5),
        ]
    )
    assert a.all(Sink), a.summary()  # no rule sends it to the proxy any more: it goes its way
    assert b.all(Answered) and b.endpoint_set == {f"{POD[1]}:8080"}, b.summary()
    saved = lab.node_exec(["iptables-save"])
    assert saved.count("-j SVC2R-USERSPACE-PORTALS") == 2, saved  # one jump each, however often applied


def test_sigterm_stops_accepting_lets_open_connections_finish_and_exits_0(lab: Lab, proxy: LabProxy) -> None:
    lab.add_pods(POD[:1], [8080])
    echo = EchoEndpoint(lab.topo.workers["pods"], POD[0], 7000)
    talk: Conversation | None = None
    try:
        proxy.start(*web(Ep(POD[0]), target=7000))
        assert proxy.process is not None
        talk = Conversation(lab.topo.workers["ext"], EXT_CLIENTS_IN_RANGE[0], VIP, 80)
        assert talk.say("one").endswith("one")
        proxy.process.send(signal.SIGTERM)
        proxy.process.wait_for("draining 1 open connection")
        (new,) = lab.probe_many([Probe("ext", VIP, 80, count=5)])
        assert new.all(Rejected), new.summary()
        assert talk.say("two") == f"{POD[0]}:7000 {NODE_PODS_IP} two"
        talk.close()
        assert proxy.process.proc.wait(PROCESS_DEADLINE) == 0
        assert "stopped" in proxy.process.log[-1]
    finally:
        if talk is not None:
            talk.close()
        echo.close()


def test_rejects_without_endpoints_and_drops_outside_clients_without_local_ones(
    lab: Lab, proxy: LabProxy
) -> None:
    lab.add_pods(POD[:1], [8080])
    proxy.start(
        service(
            "empty",
            type="NodePort",
            cluster_ip="172.30.0.30",
            ports=[port("http", 80, 8080, node_port=30030)],
        ),
        service(
            "local",
            type="NodePort",
            cluster_ip="172.30.0.31",
            external_policy="Local",
            ports=[port("http", 80, 8080, node_port=30031)],
        ),
        endpoint_slice("local", [Ep(POD[0], local=False)], [("http", 8080)]),
    )
    results = lab.probe_many(
        [
            *(Probe(o, "172.30.0.30", 80, count=3) for o in ORIGINS),
            Probe("ext", NODE_IP, 30030, count=3),
            Probe("ext", NODE_IP, 30031, count=3, expect_drop=True),
            Probe("pod", NODE_PODS_IP, 30031, count=3),
            Probe("node", NODE_IP, 30031, count=3),
        ]
    )
    for r in results[:4]:
        assert r.all(Rejected), r.summary()
    assert results[4].all(Dropped), results[4].summary()
    for r in results[5:]:  # pods and the node use the Cluster list, as with kube-proxy
        assert r.all(Answered) and r.endpoint_set == {f"{POD[0]}:8080"}, r.summary()


def test_external_traffic_policy_local_keeps_outside_clients_on_this_nodes_endpoints(
    lab: Lab, proxy: LabProxy
) -> None:
    lab.add_pods(POD[:4], [8080])
    endpoints = [Ep(POD[0]), Ep(POD[1]), Ep(POD[2], local=False), Ep(POD[3], local=False)]
    proxy.start(
        service(
            "web",
            type="LoadBalancer",
            cluster_ip=VIP,
            lb_ips=["1.2.3.4"],
            external_policy="Local",
            ports=[port("http", 80, 8080, node_port=30080)],
        ),
        endpoint_slice("web", endpoints, [("http", 8080)]),
    )
    ext_np, ext_lb, pod_np, node_np, pod_vip = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30080, count=30),
            Probe("ext", "1.2.3.4", 80, count=30),
            Probe("pod", NODE_PODS_IP, 30080, count=40),
            Probe("node", NODE_IP, 30080, count=40),
            Probe("pod", VIP, 80, count=40),
        ]
    )
    for r in (ext_np, ext_lb):
        assert r.all(Answered), r.summary()
        assert_uniform(r.endpoints, eps(POD[:2], 8080), r.summary())
    for r in (pod_np, node_np, pod_vip):
        assert r.all(Answered), r.summary()
        assert_uniform(r.endpoints, eps(POD[:4], 8080), r.summary())
