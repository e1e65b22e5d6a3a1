"""Shared fixtures: builders for Kubernetes objects in kube-proxy's test address plan.

Pods 10.0.0.0/8 (endpoints 10.180.x.x), ClusterIPs 172.30.0.0/16, this node node1 at
192.168.0.2, externalIPs 192.168.99.0/24, LoadBalancer IPs 1.2.3.4 / 5.6.7.8, outside
clients 203.0.113.0/24.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings

# CI explores the same examples on every run, so a red build is reproducible; locally each
# run draws new ones. Deadlines are off: the kernel-backed properties are slow by nature. So is the
# too_slow health check: it times the drawing of examples, and a busy machine fails it, not the code.
_UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("ci", _UNTIMED, derandomize=True)
settings.register_profile("dev", _UNTIMED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

NODE_ARGS = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]


def service(name: str = "svc1", namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clusterIP": "172.30.0.41",
        "ports": [{"name": "p80", "port": 80, "targetPort": 8080}],
    }
    body.update(spec)
    status = body.pop("status", None)
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }
    if status is not None:
        obj["status"] = status
    return obj


def endpoint(ip: str, node: str | None = "node1", **conditions: bool) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [ip]}
    if node is not None:
        ep["nodeName"] = node
    if conditions:
        ep["conditions"] = conditions
    return ep


def endpoint_slice(
    service_name: str = "svc1",
    namespace: str = "ns1",
    endpoints: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    name: str | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "endpoints": endpoints if endpoints is not None else [endpoint("10.180.0.1")],
        "ports": ports if ports is not None else [{"name": "p80", "port": 8080}],
    }


def to_yaml(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The `root` marker is the one switch: a marked test skips with the reason as a plain
    # user, whatever fixtures it uses, instead of failing inside `ip netns add`.
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and loads rules into the real kernel")


def requires_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: creates network namespaces and loads rules"
    )
