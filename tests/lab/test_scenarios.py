"""kube-proxy semantics, proven with real packets: manifest -> ``svc2rules compile`` -> load -> probe.

Every scenario is parametrised by the ``backend`` fixture (one loader per backend the compiler can
render), so a new backend reuses this whole list. Expectations follow kube-proxy, not the
compiler: a failure here is a compiler bug until shown otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest

from .lab import Lab
from .loaders import Loader
from .manifests import Ep, endpoint_slice, port, service
from .probe import Answered, Dropped, Origin, Probe, Proto, Rejected, Sink
from .scenario import assert_uniform, deploy, eps
from .topology import (
    EXT_CLIENT,
    EXT_CLIENT_DENIED,
    EXT_CLIENTS_IN_RANGE,
    LB_SOURCE_RANGE,
    NODE_IP,
    NODE_PODS_IP,
    POD_CLIENT,
    POD_CLIENTS,
)

pytestmark = [pytest.mark.root, pytest.mark.lab]

POD = [f"10.180.0.{i}" for i in range(1, 9)]
ORIGINS: tuple[Origin, ...] = ("ext", "pod", "node")
#: A TCP service port 80 and a UDP service port 53, as (port, proto).
TCP80_UDP53: tuple[tuple[int, Proto], ...] = ((80, "tcp"), (53, "udp"))


# -- load balancing ----------------------------------------------------------------------------------


def test_clusterip_spreads_over_all_endpoints(lab: Lab, backend: Loader) -> None:
    endpoints = [Ep(POD[0]), Ep(POD[1]), Ep(POD[2], local=False), Ep(POD[3], local=False)]
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        backend,
        service("web", cluster_ip="172.30.0.10", ports=[port("http", 80, 8080)]),
        endpoint_slice("web", endpoints, [("http", 8080)]),
    )
    n = 240
    results = lab.probe_many([Probe(o, "172.30.0.10", 80, count=n) for o in ORIGINS])
    for r in results:
        assert r.all(Answered), r.summary()
        assert_uniform(r.endpoints, eps(POD[:4], 8080), r.summary())


def test_udp_service(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [5353])
    deploy(
        lab,
        backend,
        service(
            "dns",
            type="NodePort",
            cluster_ip="172.30.0.53",
            ports=[port("dns", 53, 5353, "UDP", node_port=30053)],
        ),
        endpoint_slice("dns", [Ep(POD[0]), Ep(POD[1], local=False)], [("dns", 5353, "UDP")]),
    )
    results = lab.probe_many(
        [
            *(Probe(o, "172.30.0.53", 53, "udp", count=100) for o in ORIGINS),
            Probe("ext", NODE_IP, 30053, "udp", count=100),
            Probe("pod", "172.30.0.53", 53, "tcp"),  # only UDP is a service port
        ]
    )
    for r in results[:4]:
        assert r.all(Answered), r.summary()
        assert_uniform(r.endpoints, eps(POD[:2], 5353), r.summary())
    assert results[4].all(Sink), results[4].summary()


def test_named_target_ports(lab: Lab, backend: Loader) -> None:
    """Slice ports are matched to service ports by name; each slice may resolve another number."""
    lab.add_pods(POD[:2], [8080, 9090, 9100, 9101])
    deploy(
        lab,
        backend,
        service(
            "named",
            cluster_ip="172.30.0.11",
            ports=[port("http", 80, "web"), port("metrics", 9100, "metrics")],
        ),
        endpoint_slice("named", [Ep(POD[0])], [("http", 8080), ("metrics", 9100)], suffix="a"),
        endpoint_slice("named", [Ep(POD[1])], [("metrics", 9101), ("http", 9090)], suffix="b"),
    )
    http, metrics = lab.probe_many(
        [Probe("pod", "172.30.0.11", 80, count=60), Probe("pod", "172.30.0.11", 9100, count=60)]
    )
    assert http.all(Answered) and http.endpoint_set == {f"{POD[0]}:8080", f"{POD[1]}:9090"}, http.summary()
    assert metrics.all(Answered), metrics.summary()
    assert metrics.endpoint_set == {f"{POD[0]}:9100", f"{POD[1]}:9101"}, metrics.summary()


def test_multiple_service_ports(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:1], [8080, 8443, 5353])
    deploy(
        lab,
        backend,
        service(
            "multi",
            cluster_ip="172.30.0.12",
            ports=[port("http", 80, 8080), port("https", 443, 8443), port("dns", 53, 5353, "UDP")],
        ),
        endpoint_slice("multi", [Ep(POD[0])], [("http", 8080), ("https", 8443), ("dns", 5353, "UDP")]),
    )
    http, https, dns, dns_tcp, target = lab.probe_many(
        [
            Probe("pod", "172.30.0.12", 80, count=5),
            Probe("pod", "172.30.0.12", 443, count=5),
            Probe("pod", "172.30.0.12", 53, "udp", count=5),
            Probe("pod", "172.30.0.12", 53, "tcp"),
            Probe("pod", "172.30.0.12", 8080),  # the target port is not a service port
        ]
    )
    assert http.endpoint_set == {f"{POD[0]}:8080"} and http.all(Answered), http.summary()
    assert https.endpoint_set == {f"{POD[0]}:8443"} and https.all(Answered), https.summary()
    assert dns.endpoint_set == {f"{POD[0]}:5353"} and dns.all(Answered), dns.summary()
    assert dns_tcp.all(Sink), dns_tcp.summary()
    assert target.all(Sink), target.summary()


# -- endpoint conditions -----------------------------------------------------------------------------


def test_only_ready_endpoints_while_any_is_ready(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:3], [8080])
    deploy(
        lab,
        backend,
        service("cond", cluster_ip="172.30.0.13", ports=[port("http", 80, 8080)]),
        endpoint_slice(
            "cond",
            [
                Ep(POD[0]),
                Ep(POD[1], ready=False, serving=False, terminating=False),
                Ep(POD[2], ready=False, serving=True, terminating=True),
            ],
            [("http", 8080)],
        ),
    )
    r = lab.probe("pod", "172.30.0.13", 80, count=60)
    assert r.all(Answered) and r.endpoint_set == {f"{POD[0]}:8080"}, r.summary()


def test_serving_terminating_fallback(lab: Lab, backend: Loader) -> None:
    """No ready endpoint: kube-proxy falls back to those still serving while terminating."""
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        backend,
        service("fallback", cluster_ip="172.30.0.14", ports=[port("http", 80, 8080)]),
        endpoint_slice(
            "fallback",
            [
                Ep(POD[0], ready=False, serving=True, terminating=True),
                Ep(POD[1], ready=False, serving=True, terminating=True, local=False),
                Ep(POD[2], ready=False, serving=False, terminating=True),
                Ep(POD[3], ready=False, serving=False, terminating=False),
            ],
            [("http", 8080)],
        ),
    )
    r = lab.probe("pod", "172.30.0.14", 80, count=80)
    assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()


def test_no_endpoints_rejects_tcp_and_udp(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:1], [8080, 5353])
    two_ports = [port("http", 80, 8080, node_port=30110), port("dns", 53, 5353, "UDP", node_port=30111)]
    deploy(
        lab,
        backend,
        # No slice at all, on every kind of address a service has ...
        service(
            "empty",
            type="LoadBalancer",
            cluster_ip="172.30.0.15",
            external_ips=["192.168.99.15"],
            lb_ips=["1.2.3.4"],
            ports=two_ports,
        ),
        # ... and a slice whose only endpoint is neither ready nor serving.
        service(
            "unready", cluster_ip="172.30.0.16", ports=[port("http", 80, 8080), port("dns", 53, 5353, "UDP")]
        ),
        endpoint_slice(
            "unready", [Ep(POD[0], ready=False, serving=False)], [("http", 8080), ("dns", 5353, "UDP")]
        ),
    )
    probes = [
        Probe(o, vip, p, proto, count=5)
        for o in ORIGINS
        for vip in ("172.30.0.15", "172.30.0.16")
        for p, proto in TCP80_UDP53
    ]
    # External IPs and LB IPs only from ext and pods: for node-originated traffic kube-proxy's two
    # modes differ (iptables rejects in KUBE-EXTERNAL-SERVICES, hooked to INPUT/FORWARD only, so the
    # packet leaves the node; nftables also checks it in filter-output).
    probes += [
        Probe(o, vip, p, proto, count=5)
        for o in ("ext", "pod")
        for vip in ("192.168.99.15", "1.2.3.4")
        for p, proto in TCP80_UDP53
    ]
    probes += [Probe("ext", NODE_IP, 30110, "tcp", count=5), Probe("ext", NODE_IP, 30111, "udp", count=5)]
    for r in lab.probe_many(probes):
        # From the node, a UDP REJECT in OUTPUT surfaces as EPERM: still Rejected, never Dropped.
        assert r.all(Rejected), r.summary()


# -- node ports, external IPs, load balancers --------------------------------------------------------


def test_node_port(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "np", type="NodePort", cluster_ip="172.30.0.20", ports=[port("http", 80, 8080, node_port=30080)]
        ),
        endpoint_slice("np", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
    )
    ext, node, node_other_ip, pod, other_port, not_node = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30080, count=60),
            Probe("node", NODE_IP, 30080, count=60),
            # Another local address: iptables mode serves NodePorts there too; nftables mode only
            # on the primary node IP (test_nftables_parity.py).
            Probe("node", NODE_PODS_IP, 30080, count=20),
            Probe("pod", NODE_IP, 30080, count=60),
            Probe("ext", NODE_IP, 30081),
            Probe("ext", "192.168.99.50", 30080),  # a NodePort only exists on node addresses
        ]
    )
    for r in (ext, node, pod):
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()
    if backend.name == "nftables":
        assert node_other_ip.all(Sink), node_other_ip.summary()
    else:
        assert node_other_ip.all(Answered) and node_other_ip.endpoint_set == eps(POD[:2], 8080), node_other_ip
    # externalTrafficPolicy Cluster: external and node-local sources are masqueraded.
    assert ext.masqueraded and node.masqueraded, (ext, node)
    assert other_port.outcomes == [Sink(host="node")], other_port.summary()
    assert not_node.outcomes == [Sink(host="sink")], not_node.summary()


#: Backends for which kube-proxy serves NodePorts on 127.0.0.1 (iptables mode's localhostNodePorts,
#: default true); its nftables and IPVS modes do not.
LOCALHOST_NODEPORT_BACKENDS = {"iptables"}


def test_localhost_node_port(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "lnp", type="NodePort", cluster_ip="172.30.0.23", ports=[port("http", 80, 8080, node_port=30082)]
        ),
        endpoint_slice("lnp", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
    )
    r = lab.probe("node", "127.0.0.1", 30082, src="127.0.0.1", count=60)
    if backend.name in LOCALHOST_NODEPORT_BACKENDS:
        # Only works with route_localnet, and only if the source is masqueraded off 127.0.0.1.
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()
        assert r.masqueraded and r.saw_sources != {"127.0.0.1"}, r.summary()
    else:
        assert r.all(Sink), r.summary()


def test_external_ips(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "xip", cluster_ip="172.30.0.21", external_ips=["192.168.99.10"], ports=[port("http", 80, 8080)]
        ),
        endpoint_slice("xip", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
    )
    ext, pod, node, wrong_port, wrong_ip = lab.probe_many(
        [
            Probe("ext", "192.168.99.10", 80, count=60),
            Probe("pod", "192.168.99.10", 80, count=60),
            Probe("node", "192.168.99.10", 80, count=60),
            Probe("ext", "192.168.99.10", 81),
            Probe("ext", "192.168.99.11", 80),
        ]
    )
    for r in (ext, pod, node):
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()
    assert ext.masqueraded, ext.summary()
    assert wrong_port.all(Sink) and wrong_ip.all(Sink), (wrong_port, wrong_ip)


def test_load_balancer_source_ranges(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080, 5353])
    deploy(
        lab,
        backend,
        service(
            "lb",
            type="LoadBalancer",
            cluster_ip="172.30.0.22",
            lb_ips=["1.2.3.4", "5.6.7.8"],
            source_ranges=[LB_SOURCE_RANGE],
            ports=[port("http", 80, 8080, node_port=30090), port("dns", 53, 5353, "UDP", node_port=30091)],
        ),
        endpoint_slice("lb", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080), ("dns", 5353, "UDP")]),
    )
    allowed = [
        Probe("ext", ip, p, proto, src=EXT_CLIENT, count=30)
        for ip in ("1.2.3.4", "5.6.7.8")
        for p, proto in TCP80_UDP53
    ]
    denied = [
        Probe("ext", ip, p, proto, src=EXT_CLIENT_DENIED, count=3, expect_drop=True)
        for ip in ("1.2.3.4", "5.6.7.8")
        for p, proto in TCP80_UDP53
    ]
    others = [
        Probe("pod", "1.2.3.4", 80, expect_drop=True),  # a pod is not in the source range either
        Probe("ext", NODE_IP, 30090, src=EXT_CLIENT_DENIED, count=10),  # ranges guard LB IPs only
    ]
    results = lab.probe_many([*allowed, *denied, *others])
    for r, p in zip(results[: len(allowed)], allowed, strict=True):
        target = 8080 if p.proto == "tcp" else 5353
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], target), r.summary()
    for r in results[len(allowed) : len(allowed) + len(denied)]:
        assert r.all(Dropped), r.summary()
    pod, node_port = results[-2:]
    assert pod.all(Dropped), pod.summary()
    assert node_port.all(Answered), node_port.summary()


# -- traffic policies --------------------------------------------------------------------------------


def test_external_traffic_policy_local(lab: Lab, backend: Loader) -> None:
    local, remote = POD[:2], POD[2:4]
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        backend,
        service(
            "etp",
            type="LoadBalancer",
            cluster_ip="172.30.0.30",
            lb_ips=["1.2.3.4"],
            external_policy="Local",
            ports=[port("http", 80, 8080, node_port=30100)],
        ),
        endpoint_slice(
            "etp", [Ep(ip) for ip in local] + [Ep(ip, local=False) for ip in remote], [("http", 8080)]
        ),
    )
    ext_np, ext_lb, ext_cip, pod_np, pod_lb, node_np = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30100, count=60),
            Probe("ext", "1.2.3.4", 80, count=60),
            Probe("ext", "172.30.0.30", 80, count=80),
            Probe("pod", NODE_IP, 30100, count=80),
            Probe("pod", "1.2.3.4", 80, count=80),
            Probe("node", NODE_IP, 30100, count=80),
        ]
    )
    for r in (ext_np, ext_lb):
        # External clients: local endpoints only, and the client's own address is preserved.
        assert r.all(Answered) and r.endpoint_set == eps(local, 8080), r.summary()
        assert r.saw_client, r.summary()
    # The ClusterIP ignores externalTrafficPolicy; pods and the node are short-circuited to all.
    for r in (ext_cip, pod_np, pod_lb, node_np):
        assert r.all(Answered) and r.endpoint_set == eps(POD[:4], 8080), r.summary()


def test_external_traffic_policy_local_without_local_endpoints(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "etpnone",
            type="LoadBalancer",
            cluster_ip="172.30.0.31",
            lb_ips=["5.6.7.8"],
            external_policy="Local",
            ports=[port("http", 80, 8080, node_port=30101)],
        ),
        endpoint_slice("etpnone", [Ep(POD[0], local=False), Ep(POD[1], local=False)], [("http", 8080)]),
    )
    ext_np, ext_lb, pod_lb, node_np = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30101, count=3, expect_drop=True),
            Probe("ext", "5.6.7.8", 80, count=3, expect_drop=True),
            Probe("pod", "5.6.7.8", 80, count=40),
            Probe("node", NODE_IP, 30101, count=40),
        ]
    )
    assert ext_np.all(Dropped), ext_np.summary()
    assert ext_lb.all(Dropped), ext_lb.summary()
    for r in (pod_lb, node_np):
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()


def test_local_policy_falls_back_to_local_terminating_endpoints(lab: Lab, backend: Loader) -> None:
    """eTP Local with no *ready* local endpoint uses local serving+terminating ones; the cluster-wide
    pool still has a ready endpoint, so it does not fall back."""
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "etpterm",
            type="NodePort",
            cluster_ip="172.30.0.34",
            external_policy="Local",
            ports=[port("http", 80, 8080, node_port=30102)],
        ),
        endpoint_slice(
            "etpterm",
            [Ep(POD[0], ready=False, serving=True, terminating=True), Ep(POD[1], local=False)],
            [("http", 8080)],
        ),
    )
    ext_np, pod_cip = lab.probe_many(
        [Probe("ext", NODE_IP, 30102, count=40), Probe("pod", "172.30.0.34", 80, count=40)]
    )
    assert ext_np.all(Answered) and ext_np.endpoint_set == {f"{POD[0]}:8080"}, ext_np.summary()
    assert pod_cip.all(Answered) and pod_cip.endpoint_set == {f"{POD[1]}:8080"}, pod_cip.summary()


def test_internal_traffic_policy_local(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:3], [8080])
    deploy(
        lab,
        backend,
        service("itp", cluster_ip="172.30.0.32", internal_policy="Local", ports=[port("http", 80, 8080)]),
        endpoint_slice("itp", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
        service("itpnone", cluster_ip="172.30.0.33", internal_policy="Local", ports=[port("http", 80, 8080)]),
        endpoint_slice("itpnone", [Ep(POD[2], local=False)], [("http", 8080)]),
    )
    results = lab.probe_many(
        [
            *(Probe(o, "172.30.0.32", 80, count=40) for o in ORIGINS),
            *(Probe(o, "172.30.0.33", 80, count=3, expect_drop=True) for o in ORIGINS),
        ]
    )
    for r in results[:3]:
        assert r.all(Answered) and r.endpoint_set == {f"{POD[0]}:8080"}, r.summary()
    for r in results[3:]:
        assert r.all(Dropped), r.summary()


# -- session affinity --------------------------------------------------------------------------------


def test_session_affinity_client_ip(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        backend,
        service("sticky", cluster_ip="172.30.0.40", affinity_timeout=600, ports=[port("http", 80, 8080)]),
        endpoint_slice("sticky", [Ep(ip) for ip in POD[:4]], [("http", 8080)]),
    )
    clients: list[tuple[Origin, tuple[str, ...]]] = [("ext", EXT_CLIENTS_IN_RANGE), ("pod", POD_CLIENTS)]
    # One connection per client first, so the affinity entry exists before the concurrent burst.
    first = lab.probe_many([Probe(o, "172.30.0.40", 80, src=srcs, count=len(srcs)) for o, srcs in clients])
    burst = lab.probe_many(
        [Probe(o, "172.30.0.40", 80, src=srcs, count=10 * len(srcs)) for o, srcs in clients]
    )
    for warm, hot in zip(first, burst, strict=True):
        assert warm.all(Answered) and hot.all(Answered), (warm, hot)
        chosen = {src: next(iter(c)) for src, c in warm.by_source().items()}
        for src, counts in hot.by_source().items():
            assert set(counts) == {chosen[src]}, f"{src} was not sticky: {dict(counts)}; {hot.summary()}"
        # Different clients are spread: 16 clients all on one of 4 endpoints has p = 4^-15.
        assert len(set(chosen.values())) > 1, warm.summary()


# -- source NAT --------------------------------------------------------------------------------------


def _masq_scenario(lab: Lab, backend: Loader, *, masquerade_all: bool) -> list[Any]:
    lab.add_pods(POD[:1], [8080])
    deploy(
        lab,
        backend,
        service(
            "masq", cluster_ip="172.30.0.50", ports=[port("http", 80, 8080), port("dns", 53, 8080, "UDP")]
        ),
        endpoint_slice("masq", [Ep(POD[0])], [("http", 8080), ("dns", 8080, "UDP")]),
        masquerade_all=masquerade_all,
    )
    return lab.probe_many(
        [Probe(o, "172.30.0.50", p, proto, count=5) for o in ORIGINS for p, proto in TCP80_UDP53]
    )


def test_masquerade_for_off_cluster_sources(lab: Lab, backend: Loader) -> None:
    ext_t, ext_u, pod_t, pod_u, node_t, node_u = _masq_scenario(lab, backend, masquerade_all=False)
    for r in (ext_t, ext_u):
        assert r.masqueraded, r.summary()  # 203.0.113.1 is outside the cluster CIDR
    for r in (pod_t, pod_u):
        assert r.saw_client and r.saw_sources == {POD_CLIENT}, r.summary()
    for r in (node_t, node_u):
        assert r.masqueraded, r.summary()


def test_masquerade_all(lab: Lab, backend: Loader) -> None:
    for r in _masq_scenario(lab, backend, masquerade_all=True):
        assert r.masqueraded and r.saw_sources == {NODE_PODS_IP}, r.summary()


def test_hairpin(lab: Lab, backend: Loader) -> None:
    """A pod reaching itself through its Service is answered, and sees a node address."""
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service("hair", cluster_ip="172.30.0.51", ports=[port("http", 80, 8080)]),
        endpoint_slice("hair", [Ep(POD[0]), Ep(POD[1])], [("http", 8080)]),
    )
    r = lab.probe("pod", "172.30.0.51", 80, src=POD[0], count=80)
    assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()
    for o in r.answered:
        if o.endpoint == f"{POD[0]}:8080":
            assert o.masqueraded, f"hairpin not masqueraded: {o}"
        else:
            assert o.saw_source == POD[0], f"pod-to-other-pod was masqueraded: {o}"


# -- services kube-proxy ignores ---------------------------------------------------------------------


def test_headless_and_external_name_are_not_proxied(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:1], [8080])
    deploy(
        lab,
        backend,
        service(
            "headless", cluster_ip="None", external_ips=["192.168.99.20"], ports=[port("http", 80, 8080)]
        ),
        endpoint_slice("headless", [Ep(POD[0])], [("http", 8080)]),
        service(
            "extname",
            type="ExternalName",
            cluster_ip=None,
            external_name="db.example.com",
            external_ips=["192.168.99.21"],
            ports=[port("http", 80, 8080)],
        ),
        endpoint_slice("extname", [Ep(POD[0])], [("http", 8080)]),
        # Labelled for another service proxy: kube-proxy (and so we) must leave it alone.
        service(
            "otherproxy",
            cluster_ip="172.30.0.61",
            labels={"service.kubernetes.io/service-proxy-name": "someone-else"},
            ports=[port("http", 80, 8080)],
        ),
        endpoint_slice("otherproxy", [Ep(POD[0])], [("http", 8080)]),
        # A proxied service next to them proves the ruleset was loaded at all.
        service("control", cluster_ip="172.30.0.60", ports=[port("http", 80, 8080)]),
        endpoint_slice("control", [Ep(POD[0])], [("http", 8080)]),
    )
    headless, extname, other, control = lab.probe_many(
        [
            Probe("ext", "192.168.99.20", 80, count=3),
            Probe("ext", "192.168.99.21", 80, count=3),
            Probe("pod", "172.30.0.61", 80, count=3),
            Probe("ext", "172.30.0.60", 80, count=3),
        ]
    )
    assert headless.all(Sink) and extname.all(Sink) and other.all(Sink), (headless, extname, other)
    assert control.all(Answered), control.summary()
