"""Builders of Pods and Nodes for the derivation tests (Services: tests.conftest.service)."""

from __future__ import annotations

from typing import Any

from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.service import Service
from svc2rules.resolve.derive import Derivation, DerivedSlice, derive
from tests.conftest import service


def pod(
    name: str,
    ip: str | None = "10.180.0.1",
    *,
    namespace: str = "ns1",
    labels: dict[str, str] | None = None,
    node: str | None = "node1",
    ready: bool | None = True,
    phase: str = "Running",
    ports: list[dict[str, Any]] | None = None,
    ips: list[str] | None = None,
    deleting: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    """A Pod of Service svc1's selector (app: web) unless told otherwise."""
    status: dict[str, Any] = {"phase": phase}
    if ip is not None:
        status["podIP"] = ip
    if ips is not None:
        status["podIPs"] = [{"ip": address} for address in ips]
    if ready is not None:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ]
    body: dict[str, Any] = {"containers": [{"name": "main", "ports": ports or []}], **spec}
    if node is not None:
        body["nodeName"] = node
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {"app": "web"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body, "status": status}


def node(
    name: str,
    zone: str | None = None,
    *,
    ready: bool = True,
    cpu: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_labels = dict(labels or {})
    if zone is not None:
        all_labels["topology.kubernetes.io/zone"] = zone
    status: dict[str, Any] = {
        "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if cpu is not None:
        status["allocatable"] = {"cpu": cpu}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "status": status,
    }


def web_service(**spec: Any) -> dict[str, Any]:
    """Service ns1/svc1 selecting app=web, port 80 -> 8080."""
    return service(**{"selector": {"app": "web"}, **spec})


def derived(
    svc: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None = None
) -> Derivation:
    known = None if nodes is None else {n["metadata"]["name"]: Node.model_validate(n) for n in nodes}
    return derive(Service.model_validate(svc), [Pod.model_validate(p) for p in pods], known)


def slices_of(
    svc: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None = None
) -> list[DerivedSlice]:
    return derived(svc, pods, nodes).slices


def endpoints_of(
    svc: dict[str, Any], pods: list[dict[str, Any]], nodes: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Every endpoint of every slice, as written (manifest form)."""
    return [ep for sl in slices_of(svc, pods, nodes) for ep in sl.manifest()["endpoints"]]
