"""Endpoints derived from Pods, proven with real packets: Services + Pods (+ Nodes), no
EndpointSlice in the input -> ``svc2rules compile`` -> load -> probe.

The expectations are the EndpointSlice controller's (which Pods become endpoints, with which
conditions and ports) followed by kube-proxy's (which endpoints get traffic), as in
test_scenarios.py; `explain` is checked against every probe afterwards (conftest).
"""

from __future__ import annotations

from typing import Any

import pytest

from .lab import Lab
from .loaders import NODE_NAME, Loader
from .manifests import REMOTE_NODE, port, service
from .probe import Answered, Probe, Rejected
from .scenario import assert_uniform, deploy, eps
from .topology import NODE_IP

pytestmark = [pytest.mark.root, pytest.mark.lab]

POD = [f"10.180.0.{i}" for i in range(1, 9)]


def selecting(doc: dict[str, Any], app: str) -> dict[str, Any]:
    doc["spec"]["selector"] = {"app": app}
    return doc


def pod(
    name: str,
    ip: str | None,
    app: str,
    *,
    local: bool = True,
    ready: bool = True,
    phase: str = "Running",
    terminating: bool = False,
    ports: dict[str, int] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"app": app}}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip is not None:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": NODE_NAME if local else REMOTE_NODE,
            "containers": [
                {"name": "app", "ports": [{"name": n, "containerPort": p} for n, p in (ports or {}).items()]}
            ],
        },
        "status": status,
    }


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def test_only_ready_pods_get_traffic(lab: Lab, backend: Loader) -> None:
    """Ready Pods (local or not) are endpoints; not-ready, terminating, Failed and IP-less ones
    get nothing while a ready one exists."""
    lab.add_pods(POD[:6], [8080])
    deploy(
        lab,
        backend,
        selecting(service("web", cluster_ip="172.30.0.10", ports=[port("http", 80, 8080)]), "web"),
        pod("web-a", POD[0], "web"),
        pod("web-b", POD[1], "web", local=False),
        pod("web-c", POD[2], "web"),
        pod("web-d", POD[3], "web", ready=False),
        pod("web-e", POD[4], "web", terminating=True),
        pod("web-f", POD[5], "web", phase="Failed"),
        pod("web-g", None, "web", ready=False, phase="Pending"),
        pod("other", POD[3], "db"),
    )
    for r in lab.probe_many([Probe(o, "172.30.0.10", 80, count=150) for o in ("ext", "pod", "node")]):
        assert r.all(Answered), r.summary()
        assert_uniform(r.endpoints, eps(POD[:3], 8080), r.summary())


def test_named_target_ports_resolve_per_pod(lab: Lab, backend: Loader) -> None:
    """Each Pod's own container port for the name: two Pods on 8080, one on 9090; a Pod without
    the name is no endpoint of the port."""
    lab.add_pods(POD[:4], [8080, 9090])
    deploy(
        lab,
        backend,
        selecting(service("api", cluster_ip="172.30.0.11", ports=[port("http", 80, "web")]), "api"),
        pod("api-a", POD[0], "api", ports={"web": 8080}),
        pod("api-b", POD[1], "api", ports={"web": 8080}, local=False),
        pod("api-c", POD[2], "api", ports={"web": 9090}),
        pod("api-d", POD[3], "api", ports={"metrics": 8080}),
    )
    (r,) = lab.probe_many([Probe("pod", "172.30.0.11", 80, count=150)])
    assert r.all(Answered), r.summary()
    assert_uniform(r.endpoints, {f"{POD[0]}:8080", f"{POD[1]}:8080", f"{POD[2]}:9090"}, r.summary())


def test_local_policy_and_a_node_missing_from_the_node_list(lab: Lab, backend: Loader) -> None:
    """externalTrafficPolicy Local from Pods: external clients reach this node's Pods only; a Pod on
    a Node the input's Node list lacks is left out altogether."""
    local, remote, orphan = POD[:2], POD[2:3], POD[3]
    lab.add_pods(POD[:4], [8080])
    deploy(
        lab,
        backend,
        selecting(
            service(
                "etp",
                type="NodePort",
                cluster_ip="172.30.0.12",
                external_policy="Local",
                ports=[port("http", 80, 8080, node_port=30120)],
            ),
            "etp",
        ),
        pod("etp-a", local[0], "etp"),
        pod("etp-b", local[1], "etp"),
        pod("etp-c", remote[0], "etp", local=False),
        {**pod("etp-d", orphan, "etp"), "spec": {**pod("etp-d", orphan, "etp")["spec"], "nodeName": "node9"}},
        node(NODE_NAME),
        node(REMOTE_NODE),
    )
    ext_np, pod_cip = lab.probe_many(
        [Probe("ext", NODE_IP, 30120, count=60), Probe("pod", "172.30.0.12", 80, count=120)]
    )
    assert ext_np.all(Answered) and ext_np.endpoint_set == eps(local, 8080), ext_np.summary()
    assert ext_np.saw_client, ext_np.summary()
    assert pod_cip.all(Answered), pod_cip.summary()
    assert_uniform(pod_cip.endpoints, eps(local + remote, 8080), pod_cip.summary())


def test_terminating_pods_serve_when_none_is_ready(lab: Lab, backend: Loader) -> None:
    """Terminating Pods that are still Ready are serving: kube-proxy falls back to them."""
    lab.add_pods(POD[:2], [8080])
    deploy(
        lab,
        backend,
        selecting(service("drain", cluster_ip="172.30.0.13", ports=[port("http", 80, 8080)]), "drain"),
        pod("drain-a", POD[0], "drain", terminating=True),
        pod("drain-b", POD[1], "drain", terminating=True, ready=False),
    )
    (r,) = lab.probe_many([Probe("pod", "172.30.0.13", 80, count=20)])
    assert r.all(Answered) and r.endpoint_set == eps(POD[:1], 8080), r.summary()


def test_a_selector_matching_no_pod_rejects(lab: Lab, backend: Loader) -> None:
    lab.add_pods(POD[:1], [8080])
    deploy(
        lab,
        backend,
        selecting(service("typo", cluster_ip="172.30.0.14", ports=[port("http", 80, 8080)]), "wbe"),
        pod("web-a", POD[0], "web"),
    )
    for r in lab.probe_many([Probe(o, "172.30.0.14", 80, count=3) for o in ("ext", "pod", "node")]):
        assert r.all(Rejected), r.summary()
