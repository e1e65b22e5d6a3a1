"""The one compile path: without a memo it is the pure stages composed and fingerprints
nothing; fingerprinting (asked for, or implied by a memo) changes nothing but what the result
can tell a memo and an applier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from svc2rules.compile import MemoryMemo, compile_sources
from svc2rules.compile import core as core_module
from svc2rules.compile import read as read_module
from svc2rules.compile.cache import CompileCache, cache_path
from svc2rules.config import ProxyConfig
from svc2rules.errors import InputError
from svc2rules.load import Source, parse_source
from svc2rules.model.registry import validate_objects
from svc2rules.resolve import resolve
from tests.conftest import endpoint, endpoint_slice, service
from tests.golden.cases import cases
from tests.property.strategies import clusters

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def as_list(objects: list[dict[str, Any]], name: str = "cluster.json") -> list[Source]:
    return [Source(name, json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode())]


def two_services() -> list[dict[str, Any]]:
    return [
        service("a", clusterIP="172.30.0.1"),
        endpoint_slice("a", endpoints=[endpoint("10.180.0.1")], name="a-1"),
        service("b", clusterIP="172.30.0.2"),
        endpoint_slice("b", endpoints=[endpoint("10.180.0.2")], name="b-1"),
    ]


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.name)
def test_a_full_compile_is_the_pure_stages_composed(case: Any) -> None:
    sources = [Source(str(case.input), case.input.read_bytes())]
    raw, problems = parse_source(sources[0].name, sources[0].data)
    validated = validate_objects(raw)
    assert not problems and not validated.errors
    expected = resolve(validated.objects, CONFIG)

    compiled = compile_sources(sources, CONFIG)
    assert compiled.plan() == expected.plan
    # (then the lines that say where endpoints came from: compile/grouping.py)
    assert compiled.warnings == validated.warnings + expected.warnings + compiled.summaries


def test_without_a_memo_nothing_is_fingerprinted(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: object) -> None:
        raise AssertionError("fingerprinting ran")

    for name in ("scan_list", "rescan_list", "encode_object", "fingerprint_bytes"):
        monkeypatch.setattr(read_module, name, forbidden)
    for name in ("fingerprint_bytes", "fingerprint_config"):
        monkeypatch.setattr(core_module, name, forbidden)
    compiled = compile_sources(as_list(two_services()), CONFIG)
    assert [entry.name for entry in compiled.services] == ["ns1/a", "ns1/b"]
    assert compiled.objects is None  # nothing kept for a memo
    with pytest.raises(ValueError, match="without fingerprints"):
        _ = compiled.services[0].fingerprint


@settings(max_examples=40, deadline=None)
@given(clusters(max_services=4))
def test_fingerprinting_changes_nothing_but_the_fingerprints(objects: list[dict[str, Any]]) -> None:
    full = compile_sources(as_list(objects), CONFIG)
    fingerprinted = compile_sources(as_list(objects), CONFIG, fingerprint=True)
    assert fingerprinted.plan() == full.plan()
    assert fingerprinted.warnings == full.warnings
    assert [e.ref for e in fingerprinted.services] == [e.ref for e in full.services]
    assert all(len(entry.fingerprint) == 16 for entry in fingerprinted.services)


def test_a_memo_implies_fingerprints() -> None:
    compiled = compile_sources(as_list(two_services()), CONFIG, MemoryMemo())
    assert compiled.objects is not None
    assert len({entry.fingerprint for entry in compiled.services}) == 2


def test_a_service_fingerprint_follows_its_objects_and_the_config_not_their_order() -> None:
    def fingerprints(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> dict[str, bytes]:
        compiled = compile_sources(as_list(objects), config, fingerprint=True)
        return {entry.name: entry.fingerprint for entry in compiled.services}

    objects = two_services()
    base = fingerprints(objects)
    assert fingerprints(list(reversed(objects))) == base
    moved = two_services()
    moved[1]["endpoints"] = [endpoint("10.180.9.9")]
    assert fingerprints(moved) == {**base, "ns1/a": fingerprints(moved)["ns1/a"]}
    assert fingerprints(moved)["ns1/a"] != base["ns1/a"]
    other_node = ProxyConfig(node_name="node2", node_ips=("192.168.0.3",), cluster_cidrs=("10.0.0.0/8",))
    assert set(fingerprints(objects, other_node).values()).isdisjoint(base.values())


@pytest.mark.parametrize("fingerprint", [False, True])
def test_every_problem_of_the_input_is_reported_reading_first(fingerprint: bool) -> None:
    bad_port = service("a", clusterIP="172.30.0.1", ports=[{"name": "p", "port": 70000}])
    sources = [
        Source("broken.yaml", b"kind: [unclosed\n"),
        *as_list([bad_port, endpoint_slice("a", endpoints=[endpoint("not-an-ip")])]),
    ]
    with pytest.raises(InputError) as raised:
        compile_sources(sources, CONFIG, fingerprint=fingerprint)
    diagnostics = raised.value.diagnostics
    assert diagnostics[0].source == "broken.yaml"
    assert any("70000" in str(d) for d in diagnostics) and any("not-an-ip" in str(d) for d in diagnostics)


def test_an_unchanged_item_the_memo_knows_is_read_only_when_its_service_is_resolved() -> None:
    first = compile_sources(as_list(two_services()), CONFIG, fingerprint=True)
    changed = two_services()
    changed[3]["endpoints"] = [endpoint("10.180.9.9")]  # Service b's slice
    again = compile_sources(as_list(changed), CONFIG, MemoryMemo.of(first))
    assert [entry.name for entry in again.fresh()] == ["ns1/b"]
    objects = again.objects
    assert objects is not None
    # Service a's objects were not parsed: only their identity is there, from the memo...
    assert "spec" not in objects.raw[0].data and "endpoints" not in objects.raw[1].data
    # ... and they are read when asked for, as they are.
    assert objects.data(0) == changed[0] and objects.data(1) == changed[1]
    assert again.plan() == compile_sources(as_list(changed), CONFIG).plan()


def test_a_compile_without_fingerprints_teaches_a_memo_nothing(tmp_path: Path) -> None:
    compiled = compile_sources(as_list(two_services()), CONFIG)
    with pytest.raises(ValueError, match="without fingerprints"):
        MemoryMemo.of(compiled)
    with pytest.raises(ValueError, match="without fingerprints"):
        CompileCache.load(cache_path(tmp_path, "iptables")).save(compiled)


def test_the_previous_version_of_a_service_is_resolved_from_the_memo() -> None:
    first = compile_sources(as_list(two_services()), CONFIG, fingerprint=True)
    changed = two_services()[:2]  # Service b removed
    again = compile_sources(as_list(changed), CONFIG, MemoryMemo.of(first))
    b_before = next(entry for entry in first.services if entry.name == "ns1/b")
    assert again.remembered(b_before.fingerprint) == first.resolution(b_before)
    assert compile_sources(as_list(changed), CONFIG).remembered(b_before.fingerprint) is None
