"""Pure-Python parts of the lab (no root needed): answer parsing and result helpers."""

from __future__ import annotations

import os
import shutil

import pytest

from .agents import encode_answer
from .conftest import require_root
from .loaders import Loader, available_loaders, compiler_supports
from .probe import Answered, Dropped, Failed, Probe, ProbeResult, Rejected, Sink, parse_answer
from .topology import NODE_PODS_IP


def test_answers_round_trip() -> None:
    pod = parse_answer(encode_answer("pod", "tcp", ("10.180.0.1", 8080), ("203.0.113.1", 61000)))
    assert pod == Answered("10.180.0.1:8080", "203.0.113.1")
    assert isinstance(pod, Answered) and pod.saw_source_port == 61000 and not pod.masqueraded
    sink = parse_answer(encode_answer("sink", "udp", ("172.30.0.1", 80), ("10.180.0.200", 61000)))
    assert sink == Sink(host="sink")
    assert isinstance(sink, Sink) and sink.seen_dst == "172.30.0.1:80"
    assert parse_answer(encode_answer("node", "tcp", ("192.168.0.2", 1), ("1.1.1.1", 2))) == Sink(host="node")
    assert isinstance(parse_answer(b"garbage"), Failed)


def test_equality_ignores_incidental_details() -> None:
    assert Rejected("ECONNREFUSED") == Rejected("EPERM") == Rejected()
    assert Answered("10.180.0.1:80", "1.2.3.4", 1) == Answered("10.180.0.1:80", "1.2.3.4", 2)
    assert Answered("10.180.0.1:80", "1.2.3.4") != Answered("10.180.0.2:80", "1.2.3.4")
    assert Sink(host="sink") != Sink(host="node")


def test_sources_cycle() -> None:
    assert Probe("ext", "1.2.3.4", 80, src=("a", "b"), count=3).sources() == ["a", "b", "a"]
    assert Probe("node", "1.2.3.4", 80, count=2).sources() == [None, None]


def test_result_helpers() -> None:
    probe = Probe("ext", "172.30.0.1", 80, src=("203.0.113.1", "203.0.113.2"), count=4)
    outcomes = [
        Answered("10.180.0.1:80", "203.0.113.1"),
        Answered("10.180.0.2:80", "203.0.113.2"),
        Answered("10.180.0.1:80", "203.0.113.1"),
        Answered("10.180.0.2:80", "203.0.113.2"),
    ]
    r = ProbeResult(probe, list(outcomes), probe.sources())
    assert r.all(Answered) and r.saw_client and not r.masqueraded
    assert r.endpoints == {"10.180.0.1:80": 2, "10.180.0.2:80": 2}
    assert r.by_source() == {"203.0.113.1": {"10.180.0.1:80": 2}, "203.0.113.2": {"10.180.0.2:80": 2}}
    masq = ProbeResult(probe, [Answered("10.180.0.1:80", NODE_PODS_IP)] * 4, probe.sources())
    assert masq.masqueraded and not masq.saw_client
    mixed = ProbeResult(probe, [Dropped(), Rejected()], [None, None])
    assert not mixed.all(Answered) and not mixed.masqueraded
    assert mixed.kinds == {"Dropped": 1, "Rejected": 1}
    assert "Dropped=1" in mixed.summary()


def test_available_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2R_LAB_BACKENDS", "nftables,iptables")
    assert [ldr.name for ldr in available_loaders()] == ["nftables", "iptables"]
    monkeypatch.delenv("S2R_LAB_BACKENDS")
    names = [ldr.name for ldr in available_loaders()]
    if shutil.which("iptables-restore"):
        assert names[0] == "iptables"
    assert all(isinstance(ldr, Loader) for ldr in available_loaders())
    assert not compiler_supports("no-such-backend")


def test_lab_skips_with_a_reason_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_root()
