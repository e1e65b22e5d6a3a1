"""Every rendered ruleset is accepted by the real iptables-restore (in a private netns)."""

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
        os.geteuid() != 0, reason="needs root: iptables-restore --test in a private network namespace"
    ),
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables-restore is not installed"),
]


def restore(text: str, *flags: str) -> subprocess.CompletedProcess[str]:
    # `unshare --net` gives each check a fresh, private network namespace that
    # disappears with the process: nothing on the host is touched.
    return subprocess.run(
        ["unshare", "--net", "iptables-restore", "-w", "5", "--noflush", *flags],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )


def test_broken_payloads_are_refused_so_the_checks_can_fail() -> None:
    assert restore("*nat\n:X - [0:0]\n-A X --bogus\nCOMMIT\n", "--test").returncode != 0
    # iptables-nft's --test does not resolve chain references (measured: 1.8.9 accepts a
    # jump to a missing chain), which is why every ruleset is also really loaded below.
    assert restore("*nat\n:X - [0:0]\n-A X -j NOPE\nCOMMIT\n", "--test").returncode == 0
    assert restore("*nat\n:X - [0:0]\n-A X -j NOPE\nCOMMIT\n").returncode != 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_every_iptables_ruleset_loads(objects: list[dict[str, Any]]) -> None:
    text = compile_objects(objects, "iptables")
    checked = restore(text, "--test")
    assert checked.returncode == 0, f"iptables-restore --test failed: {checked.stderr}\n{text}"
    loaded = restore(text)
    assert loaded.returncode == 0, f"iptables-restore failed: {loaded.stderr}\n{text}"
