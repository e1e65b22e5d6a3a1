"""Grouping by Service with Pods: a Service with a selector and no EndpointSlice or Endpoints has
the Pods its selector picks (and their Nodes) as members; the plan is that of the reference
resolution, which derives from every Pod of the input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings

from svc2rules.compile import MemoryMemo, compile_sources
from svc2rules.compile.cache import CompileCache, cache_path
from svc2rules.config import ProxyConfig
from svc2rules.load import Source, parse_source
from svc2rules.model.registry import validate_objects
from svc2rules.resolve import resolve
from tests.conftest import endpoint, endpoint_slice, service
from tests.property.strategies import clusters_with_pods
from tests.unit.derive_helpers import node, pod, web_service

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def as_list(objects: list[dict[str, Any]]) -> list[Source]:
    return [
        Source("cluster.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode())
    ]


def members(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each Service's members by kind/name (the Service first)."""
    compiled = compile_sources(as_list(objects), CONFIG, fingerprint=True)
    read = compiled.objects
    assert read is not None
    out = {}
    for entry in compiled.services:
        out[entry.name] = [f"{read.identities[i][0]}/{read.identities[i][3]}" for i in entry.members]
    return out


@settings(max_examples=60, deadline=None)
@given(clusters_with_pods())
def test_the_compile_path_resolves_what_the_reference_does(objects: list[dict[str, Any]]) -> None:
    sources = as_list(objects)
    raw, _ = parse_source(sources[0].name, sources[0].data)
    validated = validate_objects(raw)
    expected = resolve(validated.objects, CONFIG)
    compiled = compile_sources(sources, CONFIG)
    event(f"Services derived from Pods: {len(compiled.summaries) and compiled.summaries[0].message[:16]}")
    assert compiled.plan() == expected.plan
    assert compiled.warnings == validated.warnings + expected.warnings + compiled.summaries


def test_a_service_without_slices_has_the_pods_its_selector_picks_and_their_nodes() -> None:
    objects = [
        web_service(),
        pod("a", "10.180.0.1", node="node1"),
        pod("b", "10.180.0.2", node="node1", labels={"app": "other"}),
        pod("c", "10.180.0.3", node="node2", namespace="ns2"),
        node("node1"),
        node("node2"),
    ]
    assert members(objects) == {"ns1/svc1": ["Service/svc1", "Pod/a", "Node/node1"]}


def test_every_node_is_a_member_when_a_pod_names_one_the_input_lacks() -> None:
    """Whether the Pod is left out depends on the Node list being known: every Node stands for it."""
    objects = [web_service(), pod("a", node="node9"), node("node1"), node("node2")]
    assert members(objects) == {"ns1/svc1": ["Service/svc1", "Pod/a", "Node/node1", "Node/node2"]}


def test_without_nodes_in_the_input_there_are_no_node_members() -> None:
    assert members([web_service(), pod("a", node="node9")]) == {"ns1/svc1": ["Service/svc1", "Pod/a"]}


def test_the_live_state_wins_a_service_with_slices_has_no_pod_members() -> None:
    objects = [web_service(), endpoint_slice("svc1", endpoints=[endpoint("10.180.9.9")]), pod("a")]
    assert members(objects) == {"ns1/svc1": ["Service/svc1", "EndpointSlice/svc1-abcde"]}
    plan = compile_sources(as_list(objects), CONFIG).plan()
    assert [ep.ip for ep in plan.service_ports[0].cluster_endpoints] == ["10.180.9.9"]


def test_a_pod_change_resolves_only_the_services_it_feeds_again() -> None:
    objects = [
        web_service(),
        service("other", clusterIP="172.30.0.42", selector={"app": "db"}),
        pod("a", "10.180.0.1"),
        pod("d", "10.180.0.4", labels={"app": "db"}),
    ]
    first = compile_sources(as_list(objects), CONFIG, fingerprint=True)
    objects[2]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    again = compile_sources(as_list(objects), CONFIG, MemoryMemo.of(first))
    assert [e.name for e in again.fresh()] == ["ns1/svc1"]
    assert again.plan() == compile_sources(as_list(objects), CONFIG).plan()


def test_known_pods_and_services_are_grouped_without_being_parsed() -> None:
    """The memo identity carries a Service's selector and a Pod's labels and Node."""
    objects = [web_service(), pod("a", "10.180.0.1"), pod("b", "10.180.0.2"), node("node1")]
    first = compile_sources(as_list(objects), CONFIG, fingerprint=True)
    objects.append(pod("c", "10.180.0.3"))
    again = compile_sources(as_list(objects), CONFIG, MemoryMemo.of(first))
    read = again.objects
    assert read is not None
    assert len(read.trusted) == 4  # all but the new Pod
    assert [e.name for e in again.fresh()] == ["ns1/svc1"]
    assert sorted(ep.ip for ep in again.plan().service_ports[0].cluster_endpoints) == [
        "10.180.0.1",
        "10.180.0.2",
        "10.180.0.3",
    ]


def summary_lines(objects: list[dict[str, Any]]) -> list[str]:
    return [str(d) for d in compile_sources(as_list(objects), CONFIG).summaries]


def test_one_line_says_how_many_services_were_derived_from_pods() -> None:
    assert summary_lines([web_service(), pod("a")]) == [
        "cluster.json: endpoints of 1 Service(s) (ns1/svc1) derived from the input's Pods, as the "
        "EndpointSlice controller writes them (the input has no EndpointSlice or Endpoints for them)"
    ]


def test_one_line_names_services_with_a_selector_and_nothing_to_go_by() -> None:
    objects = [
        service("live", clusterIP="172.30.0.1"),
        endpoint_slice("live"),
        *(service(f"s{i}", clusterIP=f"172.30.0.{i + 2}", selector={"app": f"a{i}"}) for i in range(4)),
        service("manual", clusterIP="172.30.0.9"),  # no selector: not the controller's
    ]
    assert summary_lines(objects) == [
        "cluster.json: 4 Service(s) with a selector (ns1/s0, ns1/s1, ns1/s2, ...) have no EndpointSlice, "
        "Endpoints or matching Pod in the input: they have no endpoints"
    ]


def test_an_input_with_no_endpoint_source_at_all_gets_the_kubectl_hint_instead() -> None:
    objects = [
        service("a", clusterIP="172.30.0.1", selector={"app": "x"}),
        service("b", clusterIP="172.30.0.2"),
    ]
    (line,) = summary_lines(objects)
    assert line.startswith("cluster.json: none of the 2 Service(s) (ns1/a, ns1/b) has an EndpointSlice")
    assert line.endswith(
        "the kubectl command probably lacks endpointslices (kubectl get svc,endpointslices -A -o yaml)"
    )


def test_the_summaries_are_the_same_in_an_incremental_compile() -> None:
    objects = [web_service(), pod("a"), service("s0", clusterIP="172.30.0.7", selector={"app": "none"})]
    first = compile_sources(as_list(objects), CONFIG, fingerprint=True)
    again = compile_sources(as_list(objects), CONFIG, MemoryMemo.of(first))
    assert again.summaries == first.summaries and len(first.summaries) == 2


def test_the_on_disk_cache_keeps_what_grouping_reads_of_pods(tmp_path: Path) -> None:
    """apply's compile cache: a Pod change, read through the cache (the Services and the other Pods
    known valid, not parsed), resolves the one Service it feeds as a full compile does."""
    objects = [
        web_service(),
        service("db", clusterIP="172.30.0.42", selector={"app": "db"}),
        pod("a", "10.180.0.1"),
        pod("b", "10.180.0.2", node="node2"),
        pod("d", "10.180.0.4", labels={"app": "db"}),
        node("node1", "z1"),
        node("node2", "z2"),
    ]
    index = cache_path(tmp_path, "iptables")
    cache = CompileCache.load(index)
    cache.save(compile_sources(as_list(objects), CONFIG, cache))
    objects[3]["metadata"]["labels"] = {"app": "db"}  # b moves from svc1 to db
    again = compile_sources(as_list(objects), CONFIG, CompileCache.load(index))
    assert sorted(e.name for e in again.fresh()) == ["ns1/db", "ns1/svc1"]
    assert again.plan() == compile_sources(as_list(objects), CONFIG).plan()
