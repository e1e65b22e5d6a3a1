"""explain follows kube-proxy's nftables mode where it differs from iptables: NodePorts on the
primary node IP when nodePortAddresses is unset, their no-endpoint verdict where they are
dispatched, and the ClusterIP guard's verdicts (pkg/proxy/nftables/proxier.go, cluster-ips-check)."""

from __future__ import annotations

from typing import Any

from svc2rules.explain import Origin, Verdict
from tests.conftest import endpoint_slice, service
from tests.explain.helpers import CONFIG, EXTERNAL, NODE, POD, ask, plan_of

OTHER_NODE_ADDRESS = "10.180.255.254"
TWO_ADDRESSES = CONFIG.model_copy(update={"node_ips": (NODE, OTHER_NODE_ADDRESS)})


def nodeport(**spec: Any) -> dict[str, Any]:
    return service("np", type="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080}], **spec)


def service_cidr(*cidrs: str) -> dict[str, Any]:
    kind = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"}
    return {**kind, "metadata": {"name": "kubernetes"}, "spec": {"cidrs": list(cidrs)}}


def test_nftables_serves_node_ports_on_the_primary_node_ip_when_unset() -> None:
    plan = plan_of(nodeport(), endpoint_slice("np"), config=TWO_ADDRESSES)
    assert ask(plan, EXTERNAL, NODE, 30080, backend="nftables").verdict == Verdict.DNAT
    assert ask(plan, POD, OTHER_NODE_ADDRESS, 30080, backend="nftables").verdict == Verdict.NONE
    assert ask(plan, POD, OTHER_NODE_ADDRESS, 30080, backend="iptables").verdict == Verdict.DNAT
    everywhere = TWO_ADDRESSES.model_copy(update={"node_port_addresses": ("0.0.0.0/0",)})
    plan = plan_of(nodeport(), endpoint_slice("np"), config=everywhere)
    assert ask(plan, POD, OTHER_NODE_ADDRESS, 30080, backend="nftables").verdict == Verdict.DNAT


def test_a_node_port_without_endpoints_is_refused_where_it_is_dispatched() -> None:
    plan = plan_of(nodeport(), config=TWO_ADDRESSES)
    assert ask(plan, EXTERNAL, NODE, 30080, backend="nftables").verdict == Verdict.REJECT
    assert ask(plan, POD, OTHER_NODE_ADDRESS, 30080, backend="nftables").verdict == Verdict.NONE
    assert ask(plan, POD, OTHER_NODE_ADDRESS, 30080, backend="iptables").verdict == Verdict.REJECT


def test_the_cluster_ip_guard_rejects_undefined_ports_and_drops_unallocated_addresses() -> None:
    plan = plan_of(service(), endpoint_slice(), service_cidr("172.30.0.0/16"))
    for origin in (Origin.EXTERNAL, Origin.POD, Origin.NODE):
        undefined = ask(plan, POD, "172.30.0.41", 81, origin=origin, backend="nftables")
        assert undefined.verdict == Verdict.REJECT and "undefined port" in undefined.reason
        assert any(s.step == "guard" and "ns1/svc1" in s.detail for s in undefined.steps)
        assert (
            ask(plan, POD, "172.30.0.41", 80, "UDP", origin=origin, backend="nftables").verdict
            == Verdict.REJECT
        )
        unallocated = ask(plan, POD, "172.30.0.99", 80, origin=origin, backend="nftables")
        assert unallocated.verdict == Verdict.DROP and "172.30.0.0/16" in unallocated.reason
        assert ask(plan, POD, "172.30.0.41", 80, origin=origin, backend="nftables").verdict == Verdict.DNAT
    assert ask(plan, POD, "172.31.0.1", 80, backend="nftables").verdict == Verdict.NONE
    # kube-proxy's iptables mode has no guard; nor has a plan without service CIDRs.
    assert ask(plan, POD, "172.30.0.41", 81).verdict == Verdict.NONE
    assert ask(plan, POD, "172.30.0.99", 80).verdict == Verdict.NONE
    unguarded = plan_of(service(), endpoint_slice())
    assert ask(unguarded, POD, "172.30.0.41", 81, backend="nftables").verdict == Verdict.NONE
    flagged = plan_of(
        service(), endpoint_slice(), config=CONFIG.model_copy(update={"service_cidrs": ("172.30.0.0/16",)})
    )
    assert ask(flagged, POD, "172.30.0.99", 80, backend="nftables").verdict == Verdict.DROP


def test_an_address_of_a_service_that_is_not_proxied_is_dropped_and_said_why() -> None:
    skipped = service("other", clusterIP="172.30.0.50")
    skipped["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "another-proxy"}
    plan = plan_of(service(), endpoint_slice(), skipped, service_cidr("172.30.0.0/16"))
    dropped = ask(plan, POD, "172.30.0.50", 80, backend="nftables")
    assert dropped.verdict == Verdict.DROP
    assert any("ns1/other" in n and "not proxied" in n for n in dropped.notes)
