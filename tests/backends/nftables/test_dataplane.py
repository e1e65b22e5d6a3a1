"""Real packets through the grouped layout, for what its design adds beyond the shared lab scenarios.

The shared scenarios (tests/lab/test_scenarios.py, parametrised by backend) prove kube-proxy's
behaviours for every backend. These cover the places where this layout keeps state or shares
objects in ways iptables does not: affinity kept per frontend in one dynamic map with per-element
timeouts, pools shared by all Services of one size, per-protocol pool maps, eTP Local shortcuts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.lab.lab import Lab
from tests.lab.loaders import NftablesLoader, compile_manifest
from tests.lab.manifests import Ep, endpoint_slice, manifest, port, service
from tests.lab.probe import Answered, Dropped, Probe
from tests.lab.topology import EXT_CLIENT_DENIED, EXT_CLIENTS_IN_RANGE, NODE_IP, POD_CLIENTS

from .helpers import root_only

pytestmark = [*root_only, pytest.mark.lab]

POD = [f"10.180.0.{i}" for i in range(1, 9)]
LOADER = NftablesLoader()
# The affinity timeout of the expiry test. Stickiness holds only while a client comes back within
# it, and a round of probes on a busy host can take a few seconds (retransmitted SYNs): the timeout
# leaves room for that. The wait for expiry is safe with any load: the kernel compares each
# element's own expiry time with the clock on lookup, so this long after the last use it is gone.
AFFINITY_SECONDS = 10


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab.create() as the_lab:
        yield the_lab


def deploy(lab: Lab, *docs: dict[str, object]) -> str:
    text = compile_manifest("nftables", manifest(*docs))
    lab.load(LOADER, text)
    return text


def eps(ips: list[str], port_: int) -> set[str]:
    return {f"{ip}:{port_}" for ip in ips}


def test_affinity_holds_on_every_frontend_and_expires(lab: Lab) -> None:
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        service(
            "sticky",
            type="NodePort",
            cluster_ip="172.30.0.60",
            external_ips=["192.168.99.60"],
            affinity_timeout=AFFINITY_SECONDS,
            ports=[port("http", 80, 8080, node_port=30060)],
        ),
        endpoint_slice("sticky", [Ep(ip) for ip in POD[:4]], [("http", 8080)]),
    )
    frontends = [("172.30.0.60", 80), ("192.168.99.60", 80), (NODE_IP, 30060)]
    clients = EXT_CLIENTS_IN_RANGE[:12]

    def round_() -> list[dict[str | None, str]]:
        warm = lab.probe_many([Probe("ext", ip, p, src=clients, count=len(clients)) for ip, p in frontends])
        hot = lab.probe_many(
            [Probe("ext", ip, p, src=clients, count=4 * len(clients)) for ip, p in frontends]
        )
        chosen = []
        for w, h in zip(warm, hot, strict=True):
            assert w.all(Answered) and h.all(Answered), (w, h)
            picks = {src: next(iter(c)) for src, c in w.by_source().items()}
            for src, counts in h.by_source().items():
                assert set(counts) == {picks[src]}, f"{src} not sticky: {dict(counts)}"
            chosen.append(picks)
        return chosen

    first = round_()
    time.sleep(AFFINITY_SECONDS + 1)  # every entry has expired (the last use was before round_ returned)
    second = round_()
    moved = sum(a[src] != b[src] for a, b in zip(first, second, strict=True) for src in a)
    # 36 (client, frontend) pairs each keep their endpoint with p = 1/4 if nothing expired.
    assert moved > 0, "affinity never expired"


def test_shared_pools_keep_services_apart_and_protocols_apart(lab: Lab) -> None:
    lab.add_pods(POD[:8], [8080, 5353])
    deploy(
        lab,
        # Two Services of the same size share one pool chain and map; TCP and UDP on one port.
        service("a", cluster_ip="172.30.0.61", ports=[port("t", 53, 8080), port("u", 53, 5353, "UDP")]),
        endpoint_slice("a", [Ep(ip) for ip in POD[:2]], [("t", 8080), ("u", 5353, "UDP")]),
        service("b", cluster_ip="172.30.0.62", ports=[port("t", 53, 8080)]),
        endpoint_slice("b", [Ep(ip) for ip in POD[2:4]], [("t", 8080)]),
    )
    a_tcp, a_udp, b_tcp = lab.probe_many(
        [
            Probe("pod", "172.30.0.61", 53, "tcp", count=40),
            Probe("pod", "172.30.0.61", 53, "udp", count=40),
            Probe("pod", "172.30.0.62", 53, "tcp", count=40),
        ]
    )
    assert a_tcp.all(Answered) and a_tcp.endpoint_set == eps(POD[:2], 8080), a_tcp.summary()
    assert a_udp.all(Answered) and a_udp.endpoint_set == eps(POD[:2], 5353), a_udp.summary()
    assert b_tcp.all(Answered) and b_tcp.endpoint_set == eps(POD[2:4], 8080), b_tcp.summary()


def test_local_policy_firewall_and_affinity_together(lab: Lab) -> None:
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        service(
            "lbl",
            type="LoadBalancer",
            cluster_ip="172.30.0.63",
            lb_ips=["1.2.3.4"],
            source_ranges=["203.0.113.0/25"],
            external_policy="Local",
            affinity_timeout=600,
            ports=[port("http", 80, 8080, node_port=30063)],
        ),
        endpoint_slice(
            "lbl",
            [Ep(POD[0]), Ep(POD[1]), Ep(POD[2], local=False), Ep(POD[3], local=False)],
            [("http", 8080)],
        ),
    )
    allowed, denied, pods, node = lab.probe_many(
        [
            Probe("ext", "1.2.3.4", 80, src=EXT_CLIENTS_IN_RANGE[:8], count=32),
            Probe("ext", "1.2.3.4", 80, src=EXT_CLIENT_DENIED, count=4, expect_drop=True),
            Probe("pod", "172.30.0.63", 80, src=POD_CLIENTS[:8], count=32),
            Probe("node", NODE_IP, 30063, count=8),
        ]
    )
    # eTP Local: outside clients only ever reach local endpoints, unmasqueraded, each sticky.
    assert allowed.all(Answered) and allowed.endpoint_set <= eps(POD[:2], 8080), allowed.summary()
    assert not allowed.masqueraded, allowed.summary()
    assert all(len(c) == 1 for c in allowed.by_source().values()), allowed.summary()
    assert denied.all(Dropped), denied.summary()
    # ClusterIP from pods: every endpoint (Cluster policy), sticky per client.
    assert pods.all(Answered) and pods.endpoint_set <= eps(POD[:4], 8080), pods.summary()
    assert all(len(c) == 1 for c in pods.by_source().values()), pods.summary()
    # The node itself takes the Cluster shortcut, masqueraded.
    assert node.all(Answered) and node.masqueraded, node.summary()
