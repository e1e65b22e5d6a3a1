"""Compile objects in-process, the way the CLI does, for property tests."""

from __future__ import annotations

import json
from typing import Any

from svc2rules.api import build_plan, render
from svc2rules.backends import Comments, RenderOptions
from svc2rules.config import ProxyConfig
from svc2rules.load import Source

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def compile_objects(
    objects: list[dict[str, Any]], backend: str = "iptables", config: ProxyConfig = CONFIG
) -> str:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    plan = build_plan([Source("cluster.json", data)], config).plan
    return render(plan, backend, RenderOptions(comments=Comments.ALWAYS)).text


def ir_of(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> str:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return build_plan([Source("cluster.json", data)], config).plan.to_json()
