"""BIND's named-checkzone accepts every zone we write, with its strictest name checks."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backends.dns.helpers import CONFIG, headless, headless_slice, pod
from tests.backends.dns.servers import tool
from tests.golden.cases import Case, cases
from tests.property.helpers import compile_objects
from tests.property.strategies import clusters

CASES = cases()


def checkzone(text: str, origin: str = "cluster.local") -> subprocess.CompletedProcess[str]:
    # -k/-n fail: owner names and NS/MX/SRV targets must be valid hostnames, NS targets must resolve.
    return subprocess.run(
        [tool("named-checkzone"), "-k", "fail", "-n", "fail", "-i", "full", origin, "/dev/stdin"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_broken_zone_is_refused_so_the_checks_can_fail() -> None:
    good = compile_objects([], "dns")
    assert checkzone(good).returncode == 0
    assert checkzone(good + "bad_host IN A 10.0.0.1\n").returncode != 0
    assert checkzone(good.replace(" IN SOA ", " IN SOAX ")).returncode != 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_golden_zone_loads(case: Case) -> None:
    checked = checkzone(case.expected("dns").read_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr


@st.composite
def headless_services(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 3))):
        name = f"h{i}"
        ports: list[dict[str, Any]] = draw(
            st.sampled_from([[], [{"name": "pg", "port": 5432}], [{"port": 80}]])
        )
        out.append(headless(name, publishNotReadyAddresses=draw(st.booleans()), ports=ports))
        eps = [
            pod(
                f"10.180.{i}.{j + 1}",
                hostname=draw(st.sampled_from([None, f"{name}-{j}", "same"])),
                ready=draw(st.sampled_from([None, True, False])),
            )
            for j in range(draw(st.integers(0, 4)))
        ]
        slice_ports = [{"name": "pg", "port": 15432}] if ports and ports[0].get("name") else []
        out.append(headless_slice(name, eps, slice_ports))
        if draw(st.booleans()):
            v6 = [pod(draw(st.sampled_from(["fd00::1", "fd00::", "::1", "fd00:180::9"])))]
            out.append(headless_slice(name, v6, slice_ports, address_type="IPv6"))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(max_services=4), headless_services())
def test_every_zone_loads(objects: list[dict[str, Any]], extra: list[dict[str, Any]]) -> None:
    text = compile_objects(objects + extra, "dns", CONFIG)
    checked = checkzone(text)
    assert checked.returncode == 0, f"{checked.stdout}{checked.stderr}\n{text}"
