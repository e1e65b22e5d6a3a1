"""Compile manifests with the dns backend, in-process, as `svc2rules compile --backend dns` does."""

from __future__ import annotations

import json
from typing import Any

from svc2rules.api import build_plan, render
from svc2rules.backends import Artifact
from svc2rules.config import ProxyConfig
from svc2rules.load import Source
from tests.options import render_options

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def dns_artifact(*objects: dict[str, Any], **extra: str) -> Artifact:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}).encode()
    plan = build_plan([Source("cluster.json", data)], CONFIG).plan
    return render(plan, "dns", render_options("dns", extra))


def zone(*objects: dict[str, Any], **extra: str) -> str:
    return dns_artifact(*objects, **extra).text


def records(text: str) -> list[tuple[str, str, str]]:
    """(owner, type, data) of every record line of a zone file (directives and comments skipped)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith((";", "$")):
            continue
        owner, klass, rtype, data = line.split(" ", 3)
        assert klass == "IN", line
        out.append((owner, rtype, data))
    return out


def owned(text: str, owner: str) -> set[tuple[str, str]]:
    return {(rtype, data) for o, rtype, data in records(text) if o == owner}


def headless(name: str = "db", namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "targetPort": 15432}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def headless_slice(
    service: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "ns1",
    address_type: str = "IPv4",
    name: str | None = None,
) -> dict[str, Any]:
    """A slice as the EndpointSlice controller writes it for a headless Service (label included)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-{address_type.lower()}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service, "service.kubernetes.io/headless": ""},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}] if ports is None else ports,
    }


def pod(ip: str, hostname: str | None = None, ready: bool | None = None) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [ip], "nodeName": "node1"}
    if hostname is not None:
        ep["hostname"] = hostname
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    return ep
