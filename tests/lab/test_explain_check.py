"""The explain check has teeth: outcomes that contradict explain's prediction fail it (no root needed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from .explain_check import check_explain, node_source
from .lab import Deployment
from .manifests import Ep, endpoint_slice, manifest, port, service
from .probe import Answered, Dropped, Outcome, Probe, ProbeResult, Rejected, Sink
from .topology import EXT_CLIENT, POD_CLIENT

CIP = "172.30.0.70"
MANIFEST = manifest(
    service("web", cluster_ip=CIP, ports=[port("http", 80, 8080)]),
    endpoint_slice("web", [Ep("10.180.0.1"), Ep("10.180.0.2", local=False)], [("http", 8080)]),
    service("empty", cluster_ip="172.30.0.71", ports=[port("http", 80, 8080)]),
)


@dataclass
class FakeLab:
    """What check_explain reads from a Lab: the deployments and the probe history."""

    deployments: list[Deployment] = field(default_factory=list)
    history: list[ProbeResult] = field(default_factory=list)


def checked(probe: Probe, outcomes: Sequence[Outcome], masquerade_all: bool = False) -> None:
    # As Lab.probe_many records them: the origin's default client, None (kernel's choice) for the node.
    default = {"ext": EXT_CLIENT, "pod": POD_CLIENT, "node": None}[probe.origin]
    sources = [default if s is None else s for s in probe.sources()]
    lab = FakeLab(
        [Deployment("iptables", MANIFEST, masquerade_all, 0)], [ProbeResult(probe, list(outcomes), sources)]
    )
    check_explain(lab)  # type: ignore[arg-type]


def test_agreeing_outcomes_pass() -> None:
    checked(Probe("pod", CIP, 80, count=2), [Answered("10.180.0.1:8080", "10.180.0.200")] * 2)
    checked(Probe("ext", CIP, 80), [Answered("10.180.0.2:8080", "10.180.255.254")])
    checked(Probe("pod", "172.30.0.71", 80), [Rejected("ECONNREFUSED")])
    checked(Probe("pod", CIP, 81), [Sink()])


@pytest.mark.parametrize(
    ("probe", "outcomes", "message"),
    [
        (Probe("pod", CIP, 80), [Answered("10.180.0.9:8080", "10.180.0.200")], "not a candidate"),
        (
            Probe("pod", CIP, 80),
            [Answered("10.180.0.1:8080", "10.180.255.254")],
            "predicted the client's own",
        ),
        (Probe("ext", CIP, 80), [Answered("10.180.0.1:8080", "203.0.113.1")], "predicted masqueraded"),
        (Probe("pod", CIP, 80), [Rejected("ECONNREFUSED")], "predicted DNAT"),
        (Probe("pod", "172.30.0.71", 80), [Dropped()], "predicted reject"),
        (Probe("pod", CIP, 81), [Answered("10.180.0.1:8080", "10.180.0.200")], "predicted none"),
        (Probe("pod", CIP, 80, count=40), [Answered("10.180.0.1:8080", "10.180.0.200")] * 40, "never hit"),
    ],
)
def test_contradicting_outcomes_fail(probe: Probe, outcomes: list[Outcome], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        checked(probe, outcomes)


def test_masquerade_all_is_part_of_the_replayed_deployment() -> None:
    outcome = [Answered("10.180.0.1:8080", "10.180.0.200")]
    checked(Probe("pod", CIP, 80), outcome)
    with pytest.raises(AssertionError, match="predicted masqueraded"):
        checked(Probe("pod", CIP, 80), outcome, masquerade_all=True)


def test_the_node_picks_its_source_like_the_lab_routes_say() -> None:
    assert node_source("192.168.0.2") == "192.168.0.2"
    assert node_source("127.0.0.1") == "127.0.0.1"
    assert node_source("10.180.0.1") == "10.180.255.254"
    assert node_source("172.30.0.1") == "192.168.0.2"


def test_backends_explain_does_not_model_are_not_replayed() -> None:
    wrong: list[Outcome] = [Rejected("ECONNREFUSED")]
    probe = Probe("pod", CIP, 80)
    lab = FakeLab([Deployment("userspace", MANIFEST, False, 0)], [ProbeResult(probe, wrong, [POD_CLIENT])])
    check_explain(lab)  # type: ignore[arg-type]
