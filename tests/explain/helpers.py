"""Plans for explain tests, in kube-proxy's test address plan (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from svc2rules.config import ProxyConfig
from svc2rules.explain import Explanation, Origin, Query, explain
from svc2rules.ir import Plan, Protocol
from svc2rules.load import RawObject
from svc2rules.model.registry import validate_objects
from svc2rules.resolve import resolve

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
EXTERNAL = "203.0.113.1"
POD = "10.180.0.200"
NODE = "192.168.0.2"


def plan_of(*objects: dict[str, Any], config: ProxyConfig = CONFIG) -> Plan:
    validated = validate_objects(RawObject("in.yaml", o) for o in objects)
    assert validated.errors == []
    return resolve(validated.objects, config).plan


def ask(
    plan: Plan,
    src: str,
    dst: str,
    port: int,
    proto: str = "TCP",
    origin: Origin | None = None,
    backend: str = "iptables",
) -> Explanation:
    return explain(plan, Query(src, dst, port, Protocol(proto), origin), backend)


def endpoints(e: Explanation) -> set[str]:
    return {c.address for c in e.endpoints}
