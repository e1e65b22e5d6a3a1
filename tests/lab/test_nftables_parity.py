"""kube-proxy's nftables mode where it differs from its iptables mode, in the default layout, with
real packets; every backend runs each scenario and gets its own mode's expectation:

* NodePorts (nodePortAddresses unset): nftables serves them on the primary node IP only
  (cmd/kube-proxy/app/server_linux.go, platformApplyDefaults: `primary`; proxier_test.go
  TestNodePorts), iptables on every local address; a NodePort without endpoints is rejected on
  exactly the addresses its dispatch accepts in nftables (nodeport-endpoints-check), on every
  local address in iptables (KUBE-EXTERNAL-SERVICES, `--dst-type LOCAL`).
* The ClusterIP guard (pkg/proxy/nftables/proxier.go: cluster-ips, cluster-ips-check), here
  enabled by a networking.k8s.io/v1 ServiceCIDR in the input: an undefined port of a ClusterIP
  is rejected, an address of the service CIDR no Service holds is dropped, an allocated one
  served. kube-proxy's iptables mode has no such guard: the packets go where they were routed.

After each test passes, the lab checks that `svc2rules explain` predicted every probe's fate.
"""

from __future__ import annotations

from typing import Any

import pytest

from .lab import Lab
from .loaders import Loader
from .manifests import Ep, endpoint_slice, port, service
from .probe import Answered, Dropped, Probe, Rejected, Sink
from .scenario import deploy, eps
from .topology import CLUSTER_IP_RANGE, NODE_IP, NODE_PODS_IP

pytestmark = [pytest.mark.root, pytest.mark.lab]

POD = [f"10.180.0.{i}" for i in range(1, 4)]


def service_cidr(*cidrs: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "kubernetes"},
        "spec": {"cidrs": list(cidrs)},
    }


def test_node_ports_answer_on_the_primary_node_ip_in_nftables(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        service(
            "np", type="NodePort", cluster_ip="172.30.0.60", ports=[port("http", 80, 8080, node_port=30090)]
        ),
        endpoint_slice("np", [Ep(POD[0]), Ep(POD[1], local=False)], [("http", 8080)]),
    )
    primary, other_ext, other_node = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30090, count=20),
            # The node's address towards the pods: a local address, not the primary node IP.
            Probe("pod", NODE_PODS_IP, 30090, count=5),
            Probe("node", NODE_PODS_IP, 30090, count=5),
        ]
    )
    assert primary.all(Answered) and primary.endpoint_set == eps(POD[:2], 8080), primary.summary()
    for r in (other_ext, other_node):
        if backend.name == "nftables":
            assert r.all(Sink) and {o.host for o in r.outcomes if isinstance(o, Sink)} == {"node"}, (
                r.summary()
            )
        else:
            assert r.all(Answered) and r.endpoint_set <= eps(POD[:2], 8080), r.summary()


def test_node_port_without_endpoints_is_refused_where_it_is_dispatched(lab: Lab, backend: Loader) -> None:
    deploy(
        lab,
        backend,
        service(
            "empty",
            type="NodePort",
            cluster_ip="172.30.0.61",
            ports=[port("http", 80, 8080, node_port=30091)],
        ),
    )
    primary, pod_primary, other = lab.probe_many(
        [
            Probe("ext", NODE_IP, 30091),
            Probe("pod", NODE_IP, 30091),
            Probe("pod", NODE_PODS_IP, 30091),
        ]
    )
    assert primary.all(Rejected) and pod_primary.all(Rejected), (primary, pod_primary)
    if backend.name == "nftables":
        assert other.outcomes == [Sink(host="node")], other.summary()
    else:
        assert other.all(Rejected), other.summary()


def test_cluster_ip_guard_with_a_service_cidr(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:1], [8080, 5353])
    text = deploy(
        lab,
        backend,
        service(
            "guarded", cluster_ip="172.30.0.62", ports=[port("http", 80, 8080), port("dns", 53, 5353, "UDP")]
        ),
        endpoint_slice("guarded", [Ep(POD[0])], [("http", 8080), ("dns", 5353, "UDP")]),
        service_cidr(CLUSTER_IP_RANGE, "fd00:10:96::/112"),
    )
    guarded = backend.name == "nftables"
    assert ("cluster-ips-check" in text) == guarded
    probes = []
    for origin in ("ext", "pod", "node"):
        probes += [
            Probe(origin, "172.30.0.62", 80, count=5),  # allocated, defined port: served
            Probe(origin, "172.30.0.62", 81),  # undefined port of a ClusterIP
            Probe(origin, "172.30.0.62", 53, "tcp"),  # the port is UDP's only
            Probe(origin, "172.30.0.99", 80, expect_drop=guarded),  # in the CIDR, no Service holds it
        ]
    probes.append(Probe("pod", "192.168.99.50", 80))  # outside the service CIDR: untouched
    results = lab.probe_many(probes)
    for served, undefined, wrong_proto, unallocated in zip(*[iter(results[:-1])] * 4, strict=True):
        assert served.all(Answered) and served.endpoint_set == {f"{POD[0]}:8080"}, served.summary()
        if guarded:
            assert undefined.all(Rejected) and wrong_proto.all(Rejected), (undefined, wrong_proto)
            assert unallocated.all(Dropped), unallocated.summary()
        else:
            for r in (undefined, wrong_proto, unallocated):
                assert r.all(Sink), r.summary()
    assert results[-1].outcomes == [Sink(host="sink")], results[-1].summary()
