"""Tiny builders for Service / EndpointSlice manifests used by the lab scenarios.

Address plan: ClusterIPs 172.30.x.x, pods 10.180.x.x (``nodeName: node1`` = local to the lab's
node, anything else = remote), externalIPs 192.168.99.x, LoadBalancer ingress 1.2.3.4 / 5.6.7.8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from .loaders import NODE_NAME

REMOTE_NODE = "node2"


@dataclass(frozen=True)
class Ep:
    """One endpoint; ``local`` puts it on the lab's node (node1)."""

    ip: str
    local: bool = True
    ready: bool = True
    serving: bool | None = None
    terminating: bool | None = None

    def doc(self) -> dict[str, Any]:
        conditions: dict[str, bool] = {"ready": self.ready}
        if self.serving is not None:
            conditions["serving"] = self.serving
        if self.terminating is not None:
            conditions["terminating"] = self.terminating
        return {
            "addresses": [self.ip],
            "conditions": conditions,
            "nodeName": NODE_NAME if self.local else REMOTE_NODE,
        }


def port(
    name: str, port: int, target: int | str | None = None, proto: str = "TCP", node_port: int | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "port": port, "protocol": proto}
    if target is not None:
        doc["targetPort"] = target
    if node_port is not None:
        doc["nodePort"] = node_port
    return doc


def service(
    name: str,
    *,
    ports: Sequence[dict[str, Any]],
    cluster_ip: str | None,
    type: str = "ClusterIP",
    external_ips: Sequence[str] = (),
    lb_ips: Sequence[str] = (),
    source_ranges: Sequence[str] = (),
    external_policy: str | None = None,
    internal_policy: str | None = None,
    affinity_timeout: int | None = None,
    external_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type, "ports": list(ports)}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    if external_policy:
        spec["externalTrafficPolicy"] = external_policy
    if internal_policy:
        spec["internalTrafficPolicy"] = internal_policy
    if affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout}}
    if external_name:
        spec["externalName"] = external_name
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", **({"labels": labels} if labels else {})},
        "spec": spec,
    }
    if lb_ips:
        doc["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}}
    return doc


def endpoint_slice(
    service_name: str,
    endpoints: Sequence[Ep],
    ports: Sequence[tuple[str, int] | tuple[str, int, str]],
    *,
    suffix: str = "a",
) -> dict[str, Any]:
    """``ports`` are (name, port) or (name, port, protocol) — the name must match the service port's."""
    port_docs = []
    for p in ports:
        name, number, *proto = p
        port_docs.append({"name": name, "port": number, "protocol": proto[0] if proto else "TCP"})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": port_docs,
        "endpoints": [ep.doc() for ep in endpoints],
    }


def manifest(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)
