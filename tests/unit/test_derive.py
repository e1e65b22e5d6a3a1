"""Endpoints derived from Pods, one rule of the EndpointSlice controller per test.

Each test names the function of kubernetes/kubernetes it follows (staging/src/k8s.io/endpointslice
unless said otherwise).
"""

from __future__ import annotations

from typing import Any

import pytest

from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.resolve.endpoints import normalize_slice
from tests.unit.derive_helpers import derived, endpoints_of, node, pod, slices_of, web_service

READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


def addresses(
    svc: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None = None
) -> list[str]:
    return sorted(a for ep in endpoints_of(svc, pods, nodes) for a in ep["addresses"])


# -- which Services, which Pods ---------------------------------------------------------------------


def test_the_selector_picks_pods_of_the_services_namespace_with_every_pair() -> None:
    """syncService (pkg/controller/endpointslice/endpointslice_controller.go): podLister.Pods(
    service.Namespace).List(labels.Set(selector).AsSelectorPreValidated())."""
    svc = web_service(selector={"app": "web", "tier": "front"})
    pods = [
        pod("both", "10.180.0.1", labels={"app": "web", "tier": "front", "extra": "x"}),
        pod("one-pair", "10.180.0.2", labels={"app": "web"}),
        pod("other-value", "10.180.0.3", labels={"app": "web", "tier": "back"}),
        pod("other-namespace", "10.180.0.4", labels={"app": "web", "tier": "front"}, namespace="ns2"),
        pod("case", "10.180.0.5", labels={"app": "Web", "tier": "front"}),
    ]
    assert addresses(svc, pods) == ["10.180.0.1"]


@pytest.mark.parametrize(
    "spec",
    [{}, {"selector": {}}, {"selector": {"app": "web"}, "type": "ExternalName", "externalName": "x.example"}],
    ids=["no selector", "empty selector", "ExternalName"],
)
def test_no_slices_without_a_selector_or_for_external_name(spec: dict[str, Any]) -> None:
    """syncService: an ExternalName Service or one with a nil selector gets no slices (the API
    server stores `selector: {}` as none)."""
    svc = web_service(**spec)
    if "selector" not in spec:
        svc["spec"].pop("selector")
    if spec.get("type") == "ExternalName":
        svc["spec"].pop("clusterIP")
    assert derived(svc, [pod("a")]).slices == []


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_terminal_pods_are_left_out(phase: str) -> None:
    """ShouldPodBeInEndpoints (util/controller_utils.go): isPodTerminal."""
    result = derived(web_service(), [pod("done", phase=phase), pod("running", "10.180.0.2")])
    assert [ep["targetRef"]["name"] for sl in result.slices for ep in sl.manifest()["endpoints"]] == [
        "running"
    ]
    assert result.verdicts[0].excluded == f"its phase is {phase}"


@pytest.mark.parametrize("phase", ["Pending", "Running", "Unknown", ""])
def test_pods_in_other_phases_with_an_ip_are_endpoints(phase: str) -> None:
    """ShouldPodBeInEndpoints: only Failed and Succeeded are terminal."""
    assert addresses(web_service(), [pod("p", phase=phase)]) == ["10.180.0.1"]


def test_pods_without_an_ip_are_left_out() -> None:
    """ShouldPodBeInEndpoints: len(PodIP) == 0 && len(PodIPs) == 0."""
    result = derived(web_service(), [pod("starting", None, ready=False)])
    assert endpoints_of(web_service(), [pod("starting", None, ready=False)]) == []
    assert result.verdicts[0].excluded == "it has no IP yet"


def test_pod_ips_default_from_pod_ip() -> None:
    """Conversion of v1.PodStatus (pkg/apis/core/v1): podIPs is [podIP] when only podIP is set;
    getEndpointAddresses reads podIPs."""
    assert addresses(web_service(), [pod("a", "10.180.0.7")]) == ["10.180.0.7"]
    assert addresses(web_service(), [pod("b", None, ips=["10.180.0.8"])]) == ["10.180.0.8"]


# -- conditions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "deleting", "conditions"),
    [
        (True, False, READY),
        (False, False, NOT_READY),
        (None, False, NOT_READY),
        (True, True, {"ready": False, "serving": True, "terminating": True}),
        (False, True, {"ready": False, "serving": False, "terminating": True}),
    ],
    ids=["ready", "not ready", "no Ready condition", "terminating, ready", "terminating, not ready"],
)
def test_conditions_follow_the_ready_condition_and_the_deletion_timestamp(
    ready: bool | None, deleting: bool, conditions: dict[str, bool]
) -> None:
    """podToEndpoint (utils.go): serving = IsPodReady, terminating = DeletionTimestamp != nil,
    ready = publishNotReadyAddresses || (serving && !terminating); terminating Pods are kept
    (ShouldPodBeInEndpoints with includeTerminating)."""
    (ep,) = endpoints_of(web_service(), [pod("p", ready=ready, deleting=deleting)])
    assert ep["conditions"] == conditions


def test_a_ready_condition_not_true_is_not_ready() -> None:
    """IsPodReady / getPodReadyCondition: the first Ready condition, Status == True."""
    p = pod("p", ready=None)
    p["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}, {"type": "Ready", "status": "True"}]
    (ep,) = endpoints_of(web_service(), [p])
    assert ep["conditions"] == NOT_READY


@pytest.mark.parametrize(("ready", "deleting"), [(False, False), (True, True), (False, True)])
def test_publish_not_ready_addresses_makes_every_endpoint_ready(ready: bool, deleting: bool) -> None:
    """podToEndpoint: ready := service.Spec.PublishNotReadyAddresses || (serving && !terminating)."""
    (ep,) = endpoints_of(
        web_service(publishNotReadyAddresses=True), [pod("p", ready=ready, deleting=deleting)]
    )
    assert ep["conditions"] == {"ready": True, "serving": ready, "terminating": deleting}


# -- nodes, zones, hostnames ----------------------------------------------------------------------------


def test_a_pod_on_a_node_missing_from_the_node_list_is_left_out() -> None:
    """Reconciler.reconcileByAddressType (reconciler.go): nodeLister.Get(pod.Spec.NodeName) not
    found -> the Pod is skipped unless publishNotReadyAddresses."""
    pods = [pod("on-known", "10.180.0.1", node="node1"), pod("on-gone", "10.180.0.2", node="node9")]
    nodes = [node("node1")]
    result = derived(web_service(), pods, nodes)
    assert [ep.pod for sl in result.slices for ep in sl.endpoints] == ["on-known"]
    verdicts = {v.pod.name: v.excluded for v in result.verdicts}
    assert verdicts == {"on-known": None, "on-gone": "its Node node9 is not among the input's Nodes"}
    published = web_service(publishNotReadyAddresses=True)
    assert addresses(published, pods, nodes) == ["10.180.0.1", "10.180.0.2"]


def test_an_unscheduled_pod_is_left_out_when_nodes_are_known() -> None:
    """reconcileByAddressType: nodeLister.Get("") is not found either."""
    pods = [pod("nowhere", node=None)]
    assert addresses(web_service(), pods, [node("node1")]) == []
    assert addresses(web_service(), pods) == ["10.180.0.1"]


def test_without_nodes_in_the_input_no_pod_is_left_out_for_its_node() -> None:
    """The issue's rule for an input without Nodes: nothing is known of them (node is nil in
    podToEndpoint: no zone)."""
    (ep,) = endpoints_of(web_service(), [pod("p", node="node9")])
    assert ep["nodeName"] == "node9" and "zone" not in ep


def test_zone_comes_from_the_nodes_zone_label() -> None:
    """podToEndpoint: node.Labels[v1.LabelTopologyZone] != "" sets Zone."""
    pods = [pod("a", "10.180.0.1", node="node1"), pod("b", "10.180.0.2", node="node2")]
    nodes = [node("node1", "zone-a"), node("node2", "")]
    eps = endpoints_of(web_service(), pods, nodes)
    assert [ep.get("zone") for ep in eps] == ["zone-a", None]


def test_node_name_is_the_pods() -> None:
    """podToEndpoint: NodeName when pod.Spec.NodeName != ""."""
    (ep,) = endpoints_of(web_service(), [pod("p", node="node2")])
    assert ep["nodeName"] == "node2"
    (ep,) = endpoints_of(web_service(), [pod("p", node=None)])
    assert "nodeName" not in ep


@pytest.mark.parametrize(
    ("spec", "hostname"),
    [
        ({"hostname": "web-0", "subdomain": "svc1"}, "web-0"),
        ({"hostname": "web-0", "subdomain": "other"}, None),
        ({"hostname": "web-0"}, None),
        ({"subdomain": "svc1"}, None),
    ],
    ids=["hostname and subdomain", "another subdomain", "no subdomain", "no hostname"],
)
def test_hostname_only_when_the_subdomain_names_the_service(
    spec: dict[str, Any], hostname: str | None
) -> None:
    """ShouldSetHostname (util/controller_utils.go): len(Hostname) > 0 && Subdomain == svc.Name
    && same namespace; the Service need not be headless."""
    (ep,) = endpoints_of(web_service(), [pod("p", **spec)])
    assert ep.get("hostname") == hostname


def test_host_network_pods_share_the_nodes_address_and_are_each_an_endpoint() -> None:
    """EndpointSet (util/endpointset.go) tells endpoints apart by addresses, hostname and
    targetRef: two hostNetwork Pods on one node are two endpoints with one address."""
    pods = [pod(f"agent-{i}", "192.168.0.2", hostNetwork=True) for i in range(2)]
    eps = endpoints_of(web_service(), pods)
    assert [(ep["addresses"], ep["targetRef"]["name"]) for ep in eps] == [
        (["192.168.0.2"], "agent-0"),
        (["192.168.0.2"], "agent-1"),
    ]


# -- address types --------------------------------------------------------------------------------------


def test_one_address_per_family_in_the_slices_of_that_address_type() -> None:
    """getEndpointAddresses: the Pod's IPs of the slice's address type; reconcileByAddressType
    leaves out an endpoint without any."""
    svc = web_service(ipFamilies=["IPv4", "IPv6"], clusterIPs=["172.30.0.41", "fd00:30::41"])
    pods = [
        pod("dual", "10.180.0.1", ips=["10.180.0.1", "fd00:180::1"]),
        pod("v4", "10.180.0.2"),
    ]
    by_type = {
        sl.family.value: [(ep.pod, ep.addresses) for ep in sl.endpoints] for sl in slices_of(svc, pods)
    }
    assert by_type == {
        "IPv4": [("dual", ("10.180.0.1",)), ("v4", ("10.180.0.2",))],
        "IPv6": [("dual", ("fd00:180::1",))],
    }


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"ipFamilies": ["IPv6"], "clusterIP": "fd00:30::41"}, ["IPv6"]),
        ({}, ["IPv4"]),
        ({"clusterIP": "fd00:30::41"}, ["IPv6"]),
        ({"clusterIP": "None"}, ["IPv4", "IPv6"]),
    ],
    ids=["ipFamilies", "ClusterIP v4", "ClusterIP v6", "headless without families"],
)
def test_address_types_of_a_service(spec: dict[str, Any], types: list[str]) -> None:
    """getAddressTypesForService (utils.go): spec.ipFamilies, else the ClusterIP's family, else
    (headless) both."""
    assert [sl.family.value for sl in slices_of(web_service(**spec), [])] == types


def test_addresses_are_written_as_go_writes_them() -> None:
    """getEndpointAddresses: ParseIPSloppy + String() (lower-case, compressed IPv6)."""
    svc = web_service(ipFamilies=["IPv6"], clusterIP="fd00:30::41")
    assert addresses(svc, [pod("p", "FD00:180:0:0::0:1")]) == ["fd00:180::1"]


# -- ports --------------------------------------------------------------------------------------------


def test_a_numeric_target_port_is_taken_as_is() -> None:
    """FindPort (pkg/api/v1/pod/util.go): intstr.Int -> the number, whatever the containers."""
    (sl,) = slices_of(web_service(), [pod("p")])
    assert sl.manifest()["ports"] == [{"name": "p80", "port": 8080, "protocol": "TCP"}]


def test_an_unset_target_port_is_the_port() -> None:
    """SetDefaults_Service (pkg/apis/core/v1/defaults.go): TargetPort 0 or "" is Port."""
    svc = web_service(ports=[{"name": "http", "port": 80}])
    (sl,) = slices_of(svc, [pod("p")])
    assert [p["port"] for p in sl.manifest()["ports"]] == [80]


def test_a_named_target_port_is_resolved_per_pod_with_the_protocol() -> None:
    """FindPort: a name looked up in every container's ports with port.Protocol ==
    svcPort.Protocol (a container port's protocol defaults to TCP); Pods resolving it to
    different numbers get different slices (NewPortMapKey)."""
    svc = web_service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    pods = [
        pod("a", "10.180.0.1", ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.180.0.2", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]),
        pod("c", "10.180.0.3", ports=[{"name": "web", "containerPort": 8080}]),
        pod("udp", "10.180.0.4", ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}]),
    ]
    result = derived(svc, pods)
    got = sorted(
        (tuple(p["port"] for p in sl.manifest().get("ports", [])), tuple(ep.pod for ep in sl.endpoints))
        for sl in result.slices
    )
    assert got == [((), ("udp",)), ((8080,), ("a", "c")), ((9090,), ("b",))]
    assert result.verdicts[3].missing_ports == ("http",)


def test_a_named_port_is_found_in_a_sidecar_but_not_in_a_plain_init_container() -> None:
    """FindPort: init containers with restartPolicy Always (sidecars) are searched after the
    containers; other init containers are not."""
    svc = web_service(ports=[{"name": "http", "port": 80, "targetPort": "metrics"}])
    sidecar = pod(
        "sidecar",
        "10.180.0.1",
        initContainers=[
            {
                "name": "proxy",
                "restartPolicy": "Always",
                "ports": [{"name": "metrics", "containerPort": 9100}],
            }
        ],
    )
    init = pod(
        "init",
        "10.180.0.2",
        initContainers=[{"name": "setup", "ports": [{"name": "metrics", "containerPort": 9100}]}],
    )
    ports = {sl.endpoints[0].pod: [p.port for p in sl.ports] for sl in slices_of(svc, [sidecar, init])}
    assert ports == {"sidecar": [9100], "init": []}


def test_a_port_the_pod_lacks_is_left_out_of_its_set_not_the_pod() -> None:
    """getEndpointPorts: a Service port FindPort fails on is skipped (`continue`); the endpoint
    stays with the ports it does resolve."""
    svc = web_service(
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "admin", "port": 81, "targetPort": "admin"},
        ]
    )
    (sl,) = slices_of(svc, [pod("p")])
    assert [p.name for p in sl.ports] == ["http"] and len(sl.endpoints) == 1


def test_a_headless_service_without_ports_gets_slices_without_ports() -> None:
    """getEndpointPorts: a headless Service may have no ports; its endpoints still are."""
    svc = web_service(clusterIP="None", ports=[])
    slices = slices_of(svc, [pod("p")])
    assert [(sl.family.value, sl.ports, len(sl.endpoints)) for sl in slices] == [
        ("IPv4", (), 1),
        ("IPv6", (), 0),
    ]


# -- slices ------------------------------------------------------------------------------------------


def test_at_most_100_endpoints_per_slice() -> None:
    """reconcileByPortMapping fills slices up to maxEndpointsPerSlice (kube-controller-manager's
    default --max-endpoints-per-slice is 100)."""
    pods = [pod(f"p{i:03}", f"10.180.{i // 200}.{i % 200 + 1}") for i in range(250)]
    assert [len(sl.endpoints) for sl in slices_of(web_service(), pods)] == [100, 100, 50]


def test_an_address_type_without_endpoints_gets_one_placeholder() -> None:
    """reconcileByAddressType: when no slices would exist, a placeholder without ports or
    endpoints is created (newEndpointSlice with empty endpointMeta)."""
    (sl,) = slices_of(web_service(), [pod("failed", phase="Failed")])
    manifest = sl.manifest()
    assert manifest["endpoints"] == [] and "ports" not in manifest


def test_slice_labels_are_the_services_plus_the_controllers() -> None:
    """setEndpointSliceLabels (utils.go): the Service's labels minus the reserved ones, the
    headless label when the ClusterIP is not set, service-name and managed-by."""
    svc = web_service(clusterIP="None")
    svc["metadata"]["labels"] = {"team": "shop", "kubernetes.io/service-name": "forged"}
    (sl, _) = slices_of(svc, [pod("p")])
    assert sl.manifest()["metadata"]["labels"] == {
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        "kubernetes.io/service-name": "svc1",
        "service.kubernetes.io/headless": "",
        "team": "shop",
    }
    assert sl.manifest()["metadata"]["generateName"] == "svc1-"


def test_names_are_deterministic_and_look_like_the_controllers() -> None:
    """getEndpointSlicePrefix: `<service>-`, then generateName's five characters (ours from a
    hash, the controller's random)."""
    pods = [pod(f"p{i:03}", f"10.180.{i // 200}.{i % 200 + 1}") for i in range(150)]
    names = [sl.name for sl in slices_of(web_service(), pods)]
    assert names == [sl.name for sl in slices_of(web_service(), list(reversed(pods)))]
    assert len(set(names)) == 2
    for name in names:
        assert name.startswith("svc1-") and len(name) == len("svc1-") + 5
        assert set(name[5:]) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_what_the_proxy_reads_of_a_derived_slice_is_what_it_reads_of_its_manifest() -> None:
    """The derived slices feed resolve_service directly; written out and read back as
    EndpointSlices they must say the same."""
    svc = web_service(trafficDistribution="PreferSameNode", publishNotReadyAddresses=False)
    pods = [
        pod("a", "10.180.0.1", node="node1", hostname="a", subdomain="svc1"),
        pod("b", "10.180.0.2", node="node2", ready=False),
        pod("c", "10.180.0.3", node="node1", deleting=True),
    ]
    for sl in slices_of(svc, pods, [node("node1", "z1"), node("node2", "z2")]):
        assert normalize_slice(EndpointSlice.model_validate(sl.manifest())) == sl.normalized()
