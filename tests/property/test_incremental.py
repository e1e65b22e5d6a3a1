"""The incremental compile and the per-Service planning of `apply` give what a full compile does.

Random clusters, then random edits (a Service added, removed or changed; endpoints moved, added,
emptied; an EndpointSlice added or removed; affinity toggled; objects reordered):

* compiling the edited input with what the first compile remembered gives the plan, the
  warnings and, for every backend, the rendered output of a full compile;
* an apply planned from the changed Services alone ends in exactly the state (what is loaded)
  that diffing the whole plan ends in.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from svc2rules.api import build_plan, render
from svc2rules.backends import Comments, RenderOptions, available_backends
from svc2rules.backends.iptables.apply import IptablesApplier
from svc2rules.backends.nftables.apply import NftablesApplier
from svc2rules.compile import MemoryMemo, compile_sources
from svc2rules.config import ProxyConfig
from svc2rules.host.runner import Result, Runner
from svc2rules.load import Source
from tests.golden.cases import GOLDEN_BACKENDS
from tests.property.strategies import APPS, NODE_NAMES, clusters, clusters_with_pods, node_object, pod_objects

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
BACKENDS = [b for b in available_backends() if b in GOLDEN_BACKENDS]


def source(objects: list[dict[str, Any]]) -> list[Source]:
    return [
        Source("cluster.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode())
    ]


def names(objects: list[dict[str, Any]], kind: str) -> set[str]:
    return {obj["metadata"]["name"] for obj in objects if obj["kind"] == kind}


def edit(objects: list[dict[str, Any]], data: st.DataObject) -> list[dict[str, Any]]:
    """One to three random edits of the kinds a cluster sees."""
    out = copy.deepcopy(objects)
    for _ in range(data.draw(st.integers(1, 3))):
        services = [o for o in out if o["kind"] == "Service"]
        slices = [o for o in out if o["kind"] == "EndpointSlice"]
        kind = data.draw(
            st.sampled_from(
                [
                    "move-endpoint",
                    "add-endpoint",
                    "empty-slice",
                    "drop-slice",
                    "add-slice",
                    "affinity",
                    "drop-service",
                    "add-service",
                    "node",
                    "reorder",
                ]
            )
        )
        if kind in ("move-endpoint", "add-endpoint", "empty-slice", "drop-slice", "node") and not slices:
            kind = "add-slice"
        if kind in ("affinity", "add-slice", "drop-service") and not services:
            kind = "add-service"
        if kind == "move-endpoint":
            sl = data.draw(st.sampled_from(slices))
            if sl["endpoints"]:
                sl["endpoints"][0]["addresses"] = [f"10.250.{data.draw(st.integers(0, 3))}.9"]
        elif kind == "add-endpoint":
            sl = data.draw(st.sampled_from(slices))
            sl["endpoints"].append(
                {"addresses": [f"10.251.{len(sl['endpoints'])}.{len(out)}"], "nodeName": "node1"}
            )
        elif kind == "empty-slice":
            data.draw(st.sampled_from(slices))["endpoints"] = []
        elif kind == "drop-slice":
            out.remove(data.draw(st.sampled_from(slices)))
        elif kind == "node":
            sl = data.draw(st.sampled_from(slices))
            for ep in sl["endpoints"]:
                ep["nodeName"] = data.draw(st.sampled_from(["node1", "node2"]))
        elif kind == "add-slice":
            svc = data.draw(st.sampled_from(services))
            name = svc["metadata"]["name"]
            out.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": next(
                            candidate
                            for n in itertools.count(len(out))
                            if (candidate := f"{name}-extra{n}") not in names(out, "EndpointSlice")
                        ),
                        "namespace": svc["metadata"]["namespace"],
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    # Often an endpoint another Service has too (shared hairpin elements).
                    "endpoints": [{"addresses": [data.draw(st.sampled_from(["10.180.0.1", "10.252.0.1"]))]}],
                    "ports": [
                        {"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]}
                        for p in svc["spec"]["ports"]
                    ],
                }
            )
        elif kind == "affinity":
            spec = data.draw(st.sampled_from(services))["spec"]
            if spec.get("sessionAffinity") == "ClientIP":
                spec.pop("sessionAffinity")
                spec.pop("sessionAffinityConfig", None)
            else:
                spec["sessionAffinity"] = "ClientIP"
        elif kind == "drop-service":
            out.remove(data.draw(st.sampled_from(services)))
        elif kind == "add-service":
            # A name (and ClusterIP, NodePort) no Service in `out` has: two additions with a
            # removal between them must not collide.
            index = next(n for n in itertools.count(40 + len(out)) if f"svc{n}" not in names(out, "Service"))
            new = data.draw(clusters(max_services=1))
            for obj in new:
                obj["metadata"]["name"] = obj["metadata"]["name"].replace("svc0", f"svc{index}", 1)
                labels = obj["metadata"].get("labels")
                if labels:
                    labels["kubernetes.io/service-name"] = f"svc{index}"
            new[0]["spec"]["clusterIP"] = f"172.30.{index}.1"
            for port in new[0]["spec"]["ports"]:
                if "nodePort" in port:
                    port["nodePort"] += 10 * index
            out.extend(new)
        else:
            out = data.draw(st.permutations(out))
    return out


@settings(max_examples=60, deadline=None)
@given(clusters(max_services=4), st.data())
def test_incremental_compile_equals_a_full_compile(
    objects: list[dict[str, Any]], data: st.DataObject
) -> None:
    first = compile_sources(source(objects), CONFIG, fingerprint=True)
    memo = MemoryMemo.of(first)
    changed = edit(objects, data)

    incremental = compile_sources(source(changed), CONFIG, memo)
    full = build_plan(source(changed), CONFIG)
    plan = incremental.plan()
    assert plan == full.plan
    assert incremental.warnings == full.warnings
    # Only the Services whose objects changed were resolved again.
    for entry in incremental.services:
        if memo.warnings(entry.fingerprint) is not None:
            assert entry.resolution is None or entry.resolution == incremental.resolution(entry)
    for backend in BACKENDS:
        options: RenderOptions[Any] = RenderOptions(comments=Comments.ALWAYS)
        assert render(plan, backend, options).text == render(full.plan, backend, options).text
    # The previous version of every Service is still known, exactly.
    before = {entry.name: entry for entry in first.services}
    for entry in before.values():
        assert incremental.remembered(entry.fingerprint) == first.resolution(entry)


def edit_pods(objects: list[dict[str, Any]], data: st.DataObject) -> list[dict[str, Any]]:
    """One to three random edits of what a cluster's Pods and Nodes see."""
    out = copy.deepcopy(objects)
    for _ in range(data.draw(st.integers(1, 3))):
        pods = [o for o in out if o["kind"] == "Pod"]
        services = [o for o in out if o["kind"] == "Service" and o["spec"].get("selector")]
        kind = data.draw(
            st.sampled_from(
                [
                    "relabel",
                    "readiness",
                    "ip",
                    "delete",
                    "add",
                    "terminate",
                    "node",
                    "nodes",
                    "selector",
                    "slice",
                ]
            )
        )
        if kind in ("relabel", "readiness", "ip", "delete", "terminate", "node") and not pods:
            kind = "add"
        if kind in ("selector", "slice") and not services:
            kind = "nodes"
        if kind == "relabel":
            data.draw(st.sampled_from(pods))["metadata"]["labels"] = {"app": data.draw(st.sampled_from(APPS))}
        elif kind == "readiness":
            status = data.draw(st.sampled_from(pods))["status"]
            ready = (status.get("conditions") or [{"status": "False"}])[0]["status"]
            status["conditions"] = [{"type": "Ready", "status": "False" if ready == "True" else "True"}]
        elif kind == "ip":
            status = data.draw(st.sampled_from(pods))["status"]
            status["podIP"] = f"10.181.0.{data.draw(st.integers(1, 200))}"
        elif kind == "delete":
            out.remove(data.draw(st.sampled_from(pods)))
        elif kind == "terminate":
            data.draw(st.sampled_from(pods))["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
        elif kind == "node":
            data.draw(st.sampled_from(pods))["spec"]["nodeName"] = data.draw(st.sampled_from(NODE_NAMES))
        elif kind == "add":
            index = next(n for n in itertools.count(50) if f"pod{n}" not in names(out, "Pod"))
            out.append(data.draw(pod_objects(index, data.draw(st.sampled_from(["ns1", "ns2"])))))
        elif kind == "nodes":
            # A Node added, removed or moved to another zone.
            name = data.draw(st.sampled_from(NODE_NAMES))
            present = [o for o in out if o["kind"] == "Node" and o["metadata"]["name"] == name]
            drop: bool = data.draw(st.booleans())
            if present and drop:
                out.remove(present[0])
            elif present:
                present[0]["metadata"]["labels"]["topology.kubernetes.io/zone"] = "zone-x"
            else:
                out.append(node_object(name, f"zone-{name[-1]}"))
        elif kind == "selector":
            data.draw(st.sampled_from(services))["spec"]["selector"] = {
                "app": data.draw(st.sampled_from(APPS))
            }
        else:
            # The Service gets an EndpointSlice of its own: the live state wins over its Pods.
            svc = data.draw(st.sampled_from(services))
            out.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{svc['metadata']['name']}-live{len(out)}",
                        "namespace": svc["metadata"]["namespace"],
                        "labels": {"kubernetes.io/service-name": svc["metadata"]["name"]},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.253.0.1"]}],
                    "ports": [{"name": "http", "port": 8080}],
                }
            )
    return out


@settings(max_examples=80, deadline=None)
@given(clusters_with_pods(), st.data())
def test_incremental_compile_equals_a_full_compile_with_pods(
    objects: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Pods and Nodes are members of the Services they feed: a change to one re-resolves
    exactly what a full compile resolves differently."""
    first = compile_sources(source(objects), CONFIG, fingerprint=True)
    memo = MemoryMemo.of(first)
    changed = edit_pods(objects, data)

    incremental = compile_sources(source(changed), CONFIG, memo)
    full = build_plan(source(changed), CONFIG)
    assert incremental.plan() == full.plan
    assert incremental.warnings == full.warnings
    before = {entry.name: entry for entry in first.services}
    for entry in before.values():
        assert incremental.remembered(entry.fingerprint) == first.resolution(entry)


class StateKernel(Runner):
    """A kernel that holds exactly what a state says (the marker and our jumps in place):
    enough for the appliers' planning, which lists our jumps and edited chains."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def run(
        self, argv: Any, *, stdin: str | None = None, loader: bool = False, holds_lock: bool = False
    ) -> Result:
        argv = tuple(argv)
        if argv[:1] == ("iptables",) and "-S" in argv:
            table, chain = argv[argv.index("-t") + 1], argv[-1]
            rules = [f"-A {c} {s}" for c, s in self.state.get("jumps", {}).get(table, []) if c == chain]
            text = self.state.get("tables", {}).get(table, {}).get(chain)
            if text is not None:
                rules += [f"-A {chain} {s}" for s in text.split("\n") if s]
            return Result(argv, 0, "\n".join(rules) + "\n", "")
        raise AssertionError(f"unexpected command {argv}")

    def run_many(self, argvs: Any) -> list[Result]:
        return [self.run(argv) for argv in argvs]


APPLIERS: dict[str, type[IptablesApplier] | type[NftablesApplier]] = {
    "iptables": IptablesApplier,
    "nftables": NftablesApplier,
}
PER_SERVICE_KEYS = {
    "iptables": ("tables", "udp", "groups", "segments", "owned", "totals", "ctx", "jumps"),
    "nftables": ("elements", "udp", "groups", "shared", "facts", "totals", "ctx", "header", "blocks"),
}


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@settings(max_examples=50, deadline=None)
@given(objects=clusters(max_services=4), data=st.data())
def test_planning_from_the_changed_services_ends_where_the_whole_plan_does(
    backend: str, objects: list[dict[str, Any]], data: st.DataObject
) -> None:
    options: RenderOptions[Any] = RenderOptions(comments=data.draw(st.sampled_from(list(Comments))))
    first = compile_sources(source(objects), CONFIG, fingerprint=True)
    start: Any = APPLIERS[backend](options).plan_compiled(Runner(), None, False, first, "1-a").new_state
    assert start is not None
    memo = MemoryMemo.of(first)
    changed = edit(objects, data)

    incremental = compile_sources(source(changed), CONFIG, memo)
    applier = APPLIERS[backend](options)
    by_service = applier.plan_services(StateKernel(start), start, incremental, "2-b")
    # The reference: the whole plan rendered and diffed against the state.
    whole = compile_sources(source(changed), CONFIG, fingerprint=True)
    full: Any = APPLIERS[backend](options)
    plan = whole.plan()
    services = {entry.name: entry.fingerprint.hex() for entry in whole.services}
    reference = full.plan_change(
        StateKernel(start), start, True, full.desired_with_services(plan, services), "2-b"
    )
    reference.sysctls = full.sysctls(plan)
    expected = _after(start, reference)
    event(f"planned per Service: {by_service is not None}")
    if by_service is None:
        return  # needs the whole plan (a new chain or map, a conflict, ...): planned as reference
    got = _after(start, by_service)
    for key in PER_SERVICE_KEYS[backend]:
        assert got.get(key) == expected.get(key), key
    assert by_service.kind == reference.kind or {by_service.kind, reference.kind} <= {"none", "incremental"}
    assert by_service.sysctls == reference.sysctls


def _after(start: dict[str, Any], change: Any) -> dict[str, Any]:
    """The state a change leaves (a "none" change keeps the old one, updated)."""
    if change.new_state is not None:
        state: dict[str, Any] = change.new_state
        return state
    return {**start, **(change.state_update or {})}


def _move_endpoint(objects: list[dict[str, Any]]) -> tuple[list[str], str]:
    objects[1]["endpoints"][0]["addresses"] = ["10.99.0.1"]  # svc0's slice
    return ["ns/svc0"], "10.99.0.1"


def _add_service(objects: list[dict[str, Any]]) -> tuple[list[str], str]:
    new = _service(77)
    new[0]["spec"]["clusterIP"] = "172.30.1.77"
    objects.extend(new)
    return ["ns/svc77"], "172.30.1.77"


def _remove_service(objects: list[dict[str, Any]]) -> tuple[list[str], str]:
    del objects[2:4]  # svc1
    return ["ns/svc1"], "172.30.0.2"


def _headless_endpoints(objects: list[dict[str, Any]]) -> tuple[list[str], str]:
    objects[-1]["endpoints"].append({"addresses": ["10.180.99.9"]})  # of the headless Service
    return ["ns/headless"], ""


EDITS = {
    "move an endpoint": _move_endpoint,
    "add a Service": _add_service,
    "remove a Service": _remove_service,
    "change a headless Service": _headless_endpoints,
}


@pytest.mark.parametrize("edit_name", EDITS)
@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_common_changes_are_planned_from_their_services_alone(backend: str, edit_name: str) -> None:
    """Common changes do take the per-Service path, and resolve and render nothing else."""
    objects = [o for i in range(30) for o in _service(i)]
    headless = _service(99)
    headless[0]["metadata"]["name"] = "headless"
    headless[0]["spec"]["clusterIP"] = "None"
    headless[1]["metadata"]["labels"]["kubernetes.io/service-name"] = "headless"
    objects += headless
    first = compile_sources(source(objects), CONFIG, fingerprint=True)
    options: RenderOptions[Any] = RenderOptions()
    start: Any = APPLIERS[backend](options).plan_compiled(Runner(), None, False, first, "1-a").new_state
    assert start is not None
    changed = copy.deepcopy(objects)
    names, mark = EDITS[edit_name](changed)
    incremental = compile_sources(source(changed), CONFIG, MemoryMemo.of(first))
    assert [e.name for e in incremental.services if e.resolution is not None] == [
        n for n in names if n != "ns/svc1"
    ]
    change = APPLIERS[backend](options).plan_services(StateKernel(start), start, incremental, "2-b")
    assert change is not None
    assert mark in change.payload
    assert [e.name for e in incremental.services if e.resolution is not None] == [
        n for n in names if n != "ns/svc1"
    ]


def _service(i: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"svc{i}", "namespace": "ns"},
            "spec": {"clusterIP": f"172.30.0.{i + 1}", "ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"svc{i}-a",
                "namespace": "ns",
                "labels": {"kubernetes.io/service-name": f"svc{i}"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.180.{i}.{j + 1}"], "nodeName": "node1"} for j in range(3)],
            "ports": [{"name": "http", "port": 8080}],
        },
    ]
