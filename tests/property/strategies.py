"""Hypothesis strategies: random but valid clusters in the kube-proxy test address plan."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PROTOCOLS = ("TCP", "UDP", "SCTP")


@st.composite
def endpoints(draw: st.DrawFn, count: int, subnet: int) -> list[dict[str, Any]]:
    out = []
    for j in range(count):
        conditions = draw(
            st.sampled_from(
                [
                    {},
                    {"ready": True},
                    {"ready": False},
                    {"ready": False, "serving": True, "terminating": True},
                    {"ready": False, "serving": False, "terminating": True},
                ]
            )
        )
        ep: dict[str, Any] = {
            "addresses": [f"10.180.{subnet}.{j + 1}"],
            "nodeName": draw(st.sampled_from(["node1", "node2", "node3"])),
        }
        if conditions:
            ep["conditions"] = conditions
        out.append(ep)
    return out


@st.composite
def service_with_slices(draw: st.DrawFn, index: int) -> list[dict[str, Any]]:
    name = f"svc{index}"
    namespace = draw(st.sampled_from(["ns1", "ns2"]))
    svc_type = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    external = svc_type != "ClusterIP"
    port_count = draw(st.integers(1, 3))
    ports = []
    for k in range(port_count):
        port: dict[str, Any] = {
            "name": f"p{k}",
            "port": 80 + k,
            "protocol": draw(st.sampled_from(PROTOCOLS)),
            "targetPort": 8080 + k,
        }
        if external:
            port["nodePort"] = 30000 + index * 10 + k
        ports.append(port)
    spec: dict[str, Any] = {"type": svc_type, "clusterIP": f"172.30.{index}.1", "ports": ports}
    if draw(st.booleans()):
        spec["externalIPs"] = [f"192.168.99.{index + 1}"]
    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.integers(1, 86400))}}
    if external or spec.get("externalIPs"):
        spec["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    spec["internalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if svc_type == "LoadBalancer":
        if draw(st.booleans()):
            spec["loadBalancerSourceRanges"] = draw(
                st.lists(
                    st.sampled_from(["203.0.113.0/25", "192.168.0.0/24", "198.51.100.0/24"]),
                    max_size=2,
                    unique=True,
                )
            )
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": f"1.2.{index}.4"}]}}
    slices = []
    for s in range(draw(st.integers(0, 2))):
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-{s}",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": draw(endpoints(draw(st.integers(0, 4)), index * 4 + s)),
                "ports": [
                    {"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in ports
                ],
            }
        )
    return [obj, *slices]


@st.composite
def clusters(draw: st.DrawFn, max_services: int = 5) -> list[dict[str, Any]]:
    count = draw(st.integers(1, max_services))
    objects: list[dict[str, Any]] = []
    for i in range(count):
        objects.extend(draw(service_with_slices(i)))
    return objects


# -- clusters whose endpoints come from Pods ----------------------------------------------------------

APPS = ("web", "api", "db")
NODE_NAMES = ("node1", "node2", "node3")


@st.composite
def pod_objects(draw: st.DrawFn, index: int, namespace: str) -> dict[str, Any]:
    """A Pod of one of APPS, in any state the controller tells apart."""
    status: dict[str, Any] = {"phase": draw(st.sampled_from(["Running", "Running", "Pending", "Failed"]))}
    if draw(st.integers(0, 5)):
        status["podIP"] = f"10.180.{100 + index // 200}.{index % 200 + 1}"
    ready = draw(st.sampled_from(["True", "True", "False", None]))
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    metadata: dict[str, Any] = {
        "name": f"pod{index}",
        "namespace": namespace,
        "labels": {"app": draw(st.sampled_from(APPS))},
    }
    if draw(st.integers(0, 6)) == 0:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "ports": [{"name": "http", "containerPort": draw(st.sampled_from([8080, 9090]))}],
            }
        ],
        "nodeName": draw(st.sampled_from([*NODE_NAMES, "node9"])),
    }
    if draw(st.booleans()):
        spec["hostname"], spec["subdomain"] = f"pod{index}", f"{metadata['labels']['app']}-svc"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def node_object(name: str, zone: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "4"}},
    }


@st.composite
def pod_service(draw: st.DrawFn, index: int, app: str, namespace: str) -> dict[str, Any]:
    """A Service selecting app=<app>, its target port named or numbered."""
    spec: dict[str, Any] = {
        "clusterIP": draw(st.sampled_from([f"172.31.{index}.1", "None"])),
        "selector": {"app": app},
        "ports": [{"name": "http", "port": 80, "targetPort": draw(st.sampled_from(["http", 8080]))}],
    }
    if draw(st.booleans()):
        spec["publishNotReadyAddresses"] = True
    if draw(st.booleans()):
        spec["trafficDistribution"] = draw(st.sampled_from(["PreferClose", "PreferSameNode"]))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{app}-svc", "namespace": namespace},
        "spec": spec,
    }


@st.composite
def clusters_with_pods(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Services of APPS (in ns1, some in ns2), their Pods, maybe Nodes (then maybe not all the
    Pods name), and a Service with its own EndpointSlice (the live state wins over Pods)."""
    objects: list[dict[str, Any]] = []
    for i, app in enumerate(APPS):
        for namespace in draw(st.sampled_from([("ns1",), ("ns1", "ns2")])):
            objects.append(draw(pod_service(i if namespace == "ns1" else i + 10, app, namespace)))
    for i in range(draw(st.integers(0, 8))):
        objects.append(draw(pod_objects(i, draw(st.sampled_from(["ns1", "ns1", "ns2"])))))
    if draw(st.booleans()):
        objects += [node_object(name, f"zone-{name[-1]}") for name in NODE_NAMES[: draw(st.integers(1, 3))]]
    if draw(st.booleans()):
        objects.extend(draw(service_with_slices(7)))
    return objects
