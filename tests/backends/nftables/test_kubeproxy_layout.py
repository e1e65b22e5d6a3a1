"""The optional kube-proxy layout: kube-proxy's nftables proxier's ruleset, with real packets.

Its dataplane proof reuses the shared lab scenario list: every scenario function of
tests/lab/test_scenarios.py runs with the nftables loader while `deploy` compiles this layout,
but for the scenarios whose expectation is another mode's (KUBE_PROXY_NFT_DIFFERS), which are
replaced by this layout's own below: kube-proxy's nftables mode rejects undefined ports of a
ClusterIP (the ClusterIP guard) and serves NodePorts on the primary node IP only.
(The ruleset itself is compared with kube-proxy's in tests/golden/test_kube_proxy_nft.py.)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tests.lab.scenario as scenario
import tests.lab.test_scenarios as scenarios
from bench import synth
from svc2rules.api import build_plan, render
from svc2rules.config import ProxyConfig
from svc2rules.load import Source
from tests.backends.nftables.helpers import nft_check, nft_text, root_only
from tests.conftest import endpoint, endpoint_slice, service
from tests.lab import manifests as lab_manifests
from tests.lab.lab import Lab
from tests.lab.loaders import NftablesLoader
from tests.lab.manifests import Ep, port
from tests.lab.probe import Answered, Dropped, Probe, Rejected, Sink
from tests.lab.scenario import deploy, eps
from tests.lab.topology import CLUSTER_CIDR, CLUSTER_IP_RANGE, NODE_IP, NODE_PODS_IP
from tests.options import render_options

KUBE_PROXY = {"nft_layout": "kube-proxy"}


def test_names_follow_kube_proxys_hash_and_truncate() -> None:
    text = nft_text(
        [
            service("svc1", ports=[{"name": "p80", "port": 80}]),
            endpoint_slice(ports=[{"name": "p80", "port": 80}]),
        ],
        extra=KUBE_PROXY,
    )
    # The examples of kube-proxy's nftables proxier tests.
    assert "chain service-ULMVA6XW-ns1/svc1/tcp/p80 {" in text
    assert "chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {" in text
    assert "layout: kube-proxy" in text


def test_affinity_is_one_set_per_endpoint_shared_by_every_frontend() -> None:
    sticky = service(
        type="NodePort",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        externalIPs=["192.168.99.1"],
    )
    text = nft_text(
        [sticky, endpoint_slice(endpoints=[endpoint("10.180.0.1"), endpoint("10.180.0.2")])], extra=KUBE_PROXY
    )
    assert len(re.findall(r"^\tset affinity-", text, re.M)) == 2
    assert "timeout 60s" in text


def test_object_count_grows_with_services_unlike_the_default() -> None:
    def count(services: int) -> int:
        return len(
            re.findall(r"^\tchain ", nft_text(list(synth.objects(services, 2)), extra=KUBE_PROXY), re.M)
        )

    assert count(20) - count(10) == 10 * 3  # a service chain and two endpoint chains per Service


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
def test_every_golden_input_loads() -> None:
    from tests.golden.cases import cases

    config = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
    for case in cases():
        plan = build_plan([Source(str(case.input), case.input.read_bytes())], config).plan
        text = render(plan, "nftables", render_options("nftables", KUBE_PROXY)).text
        result = nft_check(text)
        assert result.returncode == 0, f"{case.name}: {result.stderr}"


# -- the shared lab scenarios, with this layout ------------------------------------------------


def _compile_kube_proxy_layout(
    backend: str,
    manifest: str,
    *,
    masquerade_all: bool = False,
    service_cidrs: tuple[str, ...] = (),
    **_: Any,
) -> str:
    assert backend == "nftables"
    config = ProxyConfig(
        node_name="node1",
        node_ips=(NODE_IP,),
        cluster_cidrs=(CLUSTER_CIDR,),
        masquerade_all=masquerade_all,
        service_cidrs=service_cidrs,
    )
    plan = build_plan([Source("lab.yaml", manifest.encode())], config).plan
    return render(plan, "nftables", render_options("nftables", KUBE_PROXY)).text


# Shared scenarios that expect another mode's behaviour, and why kube-proxy's nftables mode differs
# (pkg/proxy/nftables/proxier_test.go: TestClusterIPGeneral, TestNodePorts).
KUBE_PROXY_NFT_DIFFERS = {
    "test_multiple_service_ports": "an undefined port of a ClusterIP is rejected (cluster-ips-check)",
    "test_udp_service": "TCP to a UDP-only ClusterIP port is rejected (cluster-ips-check)",
    "test_node_port": "NodePorts answer on the primary node IP only (unset nodePortAddresses = primary)",
}
SCENARIOS: list[Callable[..., None]] = [
    fn
    for name, fn in inspect.getmembers(scenarios, inspect.isfunction)
    if name.startswith("test_")
    and list(inspect.signature(fn).parameters) == ["lab", "backend"]
    and name not in KUBE_PROXY_NFT_DIFFERS
]
POD = [f"10.180.0.{i}" for i in range(1, 4)]


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setattr(scenario, "compile_manifest", _compile_kube_proxy_layout)
    with Lab.create() as the_lab:
        yield the_lab


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@pytest.mark.lab
@pytest.mark.parametrize("run", SCENARIOS, ids=[fn.__name__ for fn in SCENARIOS])
def test_shared_scenarios_pass_with_the_kube_proxy_layout(lab: Lab, run: Callable[..., None]) -> None:
    run(lab, NftablesLoader())
    assert all("layout: kube-proxy" in text for _, text in lab.loaded), "the scenario did not use this layout"


# -- where kube-proxy's nftables mode differs from the shared scenarios -------------------------


def test_the_replaced_scenarios_exist() -> None:
    assert set(KUBE_PROXY_NFT_DIFFERS) <= {
        name for name, _ in inspect.getmembers(scenarios, inspect.isfunction)
    }


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@pytest.mark.lab
def test_cluster_ip_guard_rejects_undefined_ports(lab: Lab) -> None:
    """TestClusterIPGeneral: "TCP-only port does not match UDP traffic" and "svc1 does not accept
    svc2's ports" are REJECT; the defined ports are served."""
    lab.add_pods(POD[:1], [8080, 5353])
    deploy(
        lab,
        NftablesLoader(),
        lab_manifests.service(
            "multi", cluster_ip="172.30.0.12", ports=[port("http", 80, 8080), port("dns", 53, 5353, "UDP")]
        ),
        lab_manifests.endpoint_slice("multi", [Ep(POD[0])], [("http", 8080), ("dns", 5353, "UDP")]),
    )
    http, dns, dns_tcp, undefined, node_undefined = lab.probe_many(
        [
            Probe("pod", "172.30.0.12", 80, count=5),
            Probe("pod", "172.30.0.12", 53, "udp", count=5),
            Probe("pod", "172.30.0.12", 53, "tcp"),
            Probe("pod", "172.30.0.12", 8080),
            Probe("node", "172.30.0.12", 443),
        ]
    )
    assert http.all(Answered) and http.endpoint_set == {f"{POD[0]}:8080"}, http.summary()
    assert dns.all(Answered) and dns.endpoint_set == {f"{POD[0]}:5353"}, dns.summary()
    for refused in (dns_tcp, undefined, node_undefined):
        assert refused.all(Rejected), refused.summary()


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@pytest.mark.lab
def test_cluster_ip_guard_drops_unallocated_service_ips(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """TestClusterIPGeneral: "packet to unallocated cluster ip" is DROP once the service CIDR is
    known; an allocated ClusterIP is still served."""

    def with_service_cidr(backend: str, manifest: str, **kwargs: Any) -> str:
        return _compile_kube_proxy_layout(backend, manifest, service_cidrs=(CLUSTER_IP_RANGE,), **kwargs)

    monkeypatch.setattr(scenario, "compile_manifest", with_service_cidr)
    lab.add_pods(POD[:1], [8080])
    text = deploy(
        lab,
        NftablesLoader(),
        lab_manifests.service("web", cluster_ip="172.30.0.41", ports=[port("http", 80, 8080)]),
        lab_manifests.endpoint_slice("web", [Ep(POD[0])], [("http", 8080)]),
    )
    assert "Drop traffic to unallocated ClusterIPs" in text
    served, unallocated, outside = lab.probe_many(
        [
            Probe("pod", "172.30.0.41", 80, count=3),
            Probe("pod", "172.30.0.50", 80, expect_drop=True),
            Probe("pod", "192.168.99.50", 80),  # not a service address: routed on, untouched
        ]
    )
    assert served.all(Answered) and served.endpoint_set == {f"{POD[0]}:8080"}, served.summary()
    assert unallocated.all(Dropped), unallocated.summary()
    assert outside.outcomes == [Sink(host="sink")], outside.summary()


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@pytest.mark.lab
def test_node_ports_answer_on_the_primary_node_ip_only(lab: Lab) -> None:
    """TestNodePorts: with nodePortAddresses unset, kube-proxy's nftables mode serves NodePorts on
    the node IP ("secondary nodeIP ignores NodePorts"); a NodePort without endpoints is rejected
    there too, and only there."""
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        NftablesLoader(),
        lab_manifests.service(
            "np", type="NodePort", cluster_ip="172.30.0.20", ports=[port("http", 80, 8080, node_port=30080)]
        ),
        lab_manifests.endpoint_slice("np", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
        lab_manifests.service(
            "empty",
            type="NodePort",
            cluster_ip="172.30.0.21",
            ports=[port("http", 80, 8080, node_port=30081)],
        ),
    )
    ext, node, pod, other_ip, empty, empty_other_ip = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30080, count=20),
            Probe("node", NODE_IP, 30080, count=20),
            Probe("pod", NODE_IP, 30080, count=20),
            Probe("node", NODE_PODS_IP, 30080),
            Probe("ext", NODE_IP, 30081),
            Probe("node", NODE_PODS_IP, 30081),
        ]
    )
    for r in (ext, node, pod):
        assert r.all(Answered) and r.endpoint_set == eps(POD[:2], 8080), r.summary()
    assert ext.masqueraded and node.masqueraded, (ext, node)
    assert other_ip.all(Sink), other_ip.summary()
    assert empty.all(Rejected), empty.summary()
    assert empty_other_ip.all(Sink), empty_other_ip.summary()
