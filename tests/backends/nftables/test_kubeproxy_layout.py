"""The optional kube-proxy-compatible layout: kube-proxy's names, per-Service chains, same behaviours.

Its dataplane proof reuses the shared lab scenario list unchanged: every scenario function of
tests/lab/test_scenarios.py runs with the nftables loader while `deploy` compiles this layout.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tests.lab.scenario as scenario
import tests.lab.test_scenarios as scenarios
from bench import synth
from svc2rules.api import build_plan, render
from svc2rules.config import ProxyConfig
from svc2rules.load import Source
from tests.backends.nftables.helpers import nft_check, nft_text, root_only
from tests.conftest import endpoint, endpoint_slice, service
from tests.lab.lab import Lab
from tests.lab.loaders import NftablesLoader
from tests.lab.topology import CLUSTER_CIDR, NODE_IP
from tests.options import render_options

KUBE_PROXY = {"nft_layout": "kube-proxy"}


def test_names_follow_kube_proxys_hash_and_truncate() -> None:
    text = nft_text(
        [
            service("svc1", ports=[{"name": "p80", "port": 80}]),
            endpoint_slice(ports=[{"name": "p80", "port": 80}]),
        ],
        extra=KUBE_PROXY,
    )
    # The examples of kube-proxy's nftables proxier tests.
    assert "chain service-ULMVA6XW-ns1/svc1/tcp/p80 {" in text
    assert "chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {" in text
    assert "layout: kube-proxy" in text


def test_affinity_is_one_set_per_endpoint_shared_by_every_frontend() -> None:
    sticky = service(
        type="NodePort",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        externalIPs=["192.168.99.1"],
    )
    text = nft_text(
        [sticky, endpoint_slice(endpoints=[endpoint("10.180.0.1"), endpoint("10.180.0.2")])], extra=KUBE_PROXY
    )
    assert len(re.findall(r"^\tset affinity-", text, re.M)) == 2
    assert "timeout 60s" in text


def test_object_count_grows_with_services_unlike_the_default() -> None:
    def count(services: int) -> int:
        return len(
            re.findall(r"^\tchain ", nft_text(list(synth.objects(services, 2)), extra=KUBE_PROXY), re.M)
        )

    assert count(20) - count(10) == 10 * 3  # a service chain and two endpoint chains per Service


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
def test_every_golden_input_loads() -> None:
    from tests.golden.cases import cases

    config = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
    for case in cases():
        plan = build_plan([Source(str(case.input), case.input.read_bytes())], config).plan
        text = render(plan, "nftables", render_options("nftables", KUBE_PROXY)).text
        result = nft_check(text)
        assert result.returncode == 0, f"{case.name}: {result.stderr}"


# -- the shared lab scenarios, with this layout ------------------------------------------------


def _compile_kube_proxy_layout(backend: str, manifest: str, *, masquerade_all: bool = False, **_: Any) -> str:
    assert backend == "nftables"
    config = ProxyConfig(
        node_name="node1", node_ips=(NODE_IP,), cluster_cidrs=(CLUSTER_CIDR,), masquerade_all=masquerade_all
    )
    plan = build_plan([Source("lab.yaml", manifest.encode())], config).plan
    return render(plan, "nftables", render_options("nftables", KUBE_PROXY)).text


SCENARIOS: list[Callable[..., None]] = [
    fn
    for name, fn in inspect.getmembers(scenarios, inspect.isfunction)
    if name.startswith("test_") and list(inspect.signature(fn).parameters) == ["lab", "backend"]
]


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setattr(scenario, "compile_manifest", _compile_kube_proxy_layout)
    with Lab.create() as the_lab:
        yield the_lab


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
@pytest.mark.lab
@pytest.mark.parametrize("run", SCENARIOS, ids=[fn.__name__ for fn in SCENARIOS])
def test_shared_scenarios_pass_with_the_kube_proxy_layout(lab: Lab, run: Callable[..., None]) -> None:
    run(lab, NftablesLoader())
    assert all("layout: kube-proxy" in text for _, text in lab.loaded), "the scenario did not use this layout"
