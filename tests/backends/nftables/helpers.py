"""Compile objects with the nftables backend in-process, and check scripts with the real nft."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest

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
    return render(plan_of(objects, config), "nftables", render_options("nftables", **options))


def nft_text(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG, **options: Any) -> str:
    return artifact(objects, config, **options).text


root_only = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: nft in a private network namespace"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]


def nft_in_private_netns(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a fresh network namespace that disappears with the process."""
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, check=False, timeout=120
    )


def nft_check(text: str) -> subprocess.CompletedProcess[str]:
    """`nft -c -f` then a real `nft -f` of the same script, in a private network namespace."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft", prefix="s2r-test-") as fh:
        fh.write(text)
        fh.flush()
        return nft_in_private_netns(f"nft -c -f {fh.name} && nft -f {fh.name}")
