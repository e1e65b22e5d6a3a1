"""Every userspace ruleset is accepted by the real iptables-restore (in a private netns)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.property.helpers import compile_objects
from tests.property.strategies import clusters

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: iptables-restore in a private network namespace"
    ),
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables-restore is not installed"),
]


def in_private_netns(script: str, text: str) -> subprocess.CompletedProcess[str]:
    # `unshare --net` gives each check a fresh namespace that disappears with the process.
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script], input=text, capture_output=True, text=True, check=False
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_every_userspace_ruleset_loads(objects: list[dict[str, Any]]) -> None:
    text = compile_objects(objects, "userspace")
    loaded = in_private_netns("iptables-restore -w 5 --noflush && iptables-save", text)
    assert loaded.returncode == 0, f"iptables-restore failed: {loaded.stderr}\n{text}"
    redirects = sum(1 for line in text.splitlines() if "REDIRECT" in line)
    assert loaded.stdout.count("REDIRECT") == redirects


def test_loading_again_replaces_our_chains_and_leaves_other_rules_alone() -> None:
    first = compile_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "a", "namespace": "ns1"},
                "spec": {"clusterIP": "172.30.0.1", "ports": [{"port": 80}]},
            }
        ],
        "userspace",
    )
    body = "\n".join(line for line in first.splitlines() if not line.startswith("-I ")) + "\n"
    script = (
        "iptables -t nat -N OTHER && iptables -t nat -A OTHER -j RETURN && "
        "iptables-restore -w 5 --noflush && printf '%s' \"$BODY\" | iptables-restore -w 5 --noflush && "
        "iptables-save"
    )
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        input=first,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BODY": body},
    )
    assert proc.returncode == 0, proc.stderr
    assert "-A OTHER -j RETURN" in proc.stdout
    assert proc.stdout.count("has no endpoints") == 1  # flushed and refilled, not appended
