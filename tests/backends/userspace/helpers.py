"""Compile objects with the userspace backend in-process."""

from __future__ import annotations

import json
import re
from typing import Any

from svc2rules.api import build_plan, render
from svc2rules.backends import Artifact
from svc2rules.config import ProxyConfig
from svc2rules.ir import Plan
from svc2rules.load import Source
from tests.options import render_options

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def plan_of(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> Plan:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return build_plan([Source("cluster.json", data)], config).plan


def artifact(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG, **options: Any) -> Artifact:
    options.setdefault("comments", "always")
    return render(plan_of(objects, config), "userspace", render_options("userspace", **options))


def rules(text: str, chain: str) -> list[str]:
    """The `-A` rules of one chain, without the chain name and comments."""
    out = []
    for line in text.splitlines():
        if line.startswith(f"-A {chain} "):
            spec = line.removeprefix(f"-A {chain} ")
            out.append(re.sub(r'-m comment --comment "[^"]*" ', "", spec))
    return out


def comments(text: str, chain: str) -> list[str]:
    return [
        m.group(1)
        for line in text.splitlines()
        if line.startswith(f"-A {chain} ")
        for m in [re.search(r'--comment "([^"]*)"', line)]
        if m
    ]
