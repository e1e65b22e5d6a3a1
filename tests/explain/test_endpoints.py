"""`svc2rules endpoints`: the EndpointSlices the controller would write, and `--compare` with
kubectl diff's exit codes (0 same, 1 different, 2 invalid input or usage)."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, service, to_yaml
from tests.unit.derive_helpers import node, pod, web_service

runner = CliRunner()
CLUSTER = [
    web_service(),
    service("manual", clusterIP="172.30.0.42"),  # no selector: not the controller's
    pod("a", "10.180.0.1", node="node1"),
    pod("b", "10.180.0.2", node="node2", ready=False),
    node("node1", "z1"),
    node("node2", "z2"),
]


def endpoints(*args: str, objects: list[dict[str, Any]] = CLUSTER) -> tuple[int, str, str]:
    result = runner.invoke(app, ["endpoints", *args], input=to_yaml(*objects))
    return result.exit_code, result.stdout, result.stderr


def written(objects: list[dict[str, Any]] = CLUSTER) -> list[dict[str, Any]]:
    code, out, err = endpoints("-o", "json", objects=objects)
    assert code == 0, err
    data = json.loads(out)
    assert (data["apiVersion"], data["kind"]) == ("v1", "List")
    items: list[dict[str, Any]] = data["items"]
    return items


def test_prints_the_slices_of_the_services_the_controller_manages() -> None:
    (sl,) = written()
    assert sl["metadata"]["namespace"] == "ns1" and sl["metadata"]["generateName"] == "svc1-"
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "p80", "port": 8080, "protocol": "TCP"}]
    assert sl["endpoints"] == [
        {
            "addresses": ["10.180.0.1"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "node1",
            "zone": "z1",
            "targetRef": {"kind": "Pod", "namespace": "ns1", "name": "a"},
        },
        {
            "addresses": ["10.180.0.2"],
            "conditions": {"ready": False, "serving": False, "terminating": False},
            "nodeName": "node2",
            "zone": "z2",
            "targetRef": {"kind": "Pod", "namespace": "ns1", "name": "b"},
        },
    ]


def test_yaml_is_the_default_and_says_the_same() -> None:
    code, out, _ = endpoints()
    assert code == 0 and yaml.safe_load(out)["items"] == written()


def test_the_output_is_deterministic() -> None:
    shuffled = [CLUSTER[i] for i in (5, 3, 0, 2, 4, 1)]
    assert written(shuffled) == written()


def test_a_service_with_no_endpoints_gets_the_placeholder() -> None:
    (sl,) = written([web_service()])
    assert sl["endpoints"] == [] and "ports" not in sl


def test_what_it_prints_compiles_to_the_ir_of_the_pods() -> None:
    """Services + Pods and Services + the slices it prints resolve alike."""
    services = [o for o in CLUSTER if o["kind"] == "Service"]
    with_slices = to_yaml(*services, *written())
    by_pods = runner.invoke(app, ["compile", "-o", "json", *NODE_ARGS], input=to_yaml(*CLUSTER))
    by_slices = runner.invoke(app, ["compile", "-o", "json", *NODE_ARGS], input=with_slices)
    assert by_pods.exit_code == by_slices.exit_code == 0
    assert by_pods.stdout == by_slices.stdout


# -- --compare ----------------------------------------------------------------------------------


def live(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*CLUSTER, *slices]


def test_slices_as_the_pods_imply_them_are_no_difference() -> None:
    code, out, err = endpoints("--compare", objects=live(written()))
    assert (code, out, err) == (0, "", "")


def test_stale_missing_and_changed_endpoints_are_reported_with_exit_1() -> None:
    (sl,) = copy.deepcopy(written())
    stale = {**sl["endpoints"][0], "addresses": ["10.180.0.99"]}
    sl["endpoints"] = [
        {**sl["endpoints"][0], "conditions": {"ready": False, "serving": False, "terminating": False}},
        stale,
    ]
    code, out, err = endpoints("--compare", objects=live([sl]))
    assert code == 1
    assert out.splitlines() == [
        "ns1/svc1: IPv4 endpoint 10.180.0.1: changed: ready false in the input, true from its Pods; "
        "serving false in the input, true from its Pods (pod a)",
        "ns1/svc1: IPv4 endpoint 10.180.0.2: missing: the input has no slice with it; its Pods imply it "
        "(pod b, ready false, serving false, terminating false, nodeName node2, zone z2; ports p80 8080/TCP)",
        "ns1/svc1: IPv4 endpoint 10.180.0.99: stale: no Pod implies it (the input has ready true, serving "
        "true, terminating false, nodeName node1, zone z1; ports p80 8080/TCP)",
    ]
    assert err == "3 difference(s) between the input's EndpointSlices and its Pods\n"


def test_a_port_the_pods_resolve_differently_is_a_change() -> None:
    slices = copy.deepcopy(written())
    slices[0]["ports"][0]["port"] = 9090
    code, out, _ = endpoints("--compare", "-o", "json", objects=live(slices))
    assert code == 1
    details = [d["detail"] for d in json.loads(out)["differences"]]
    assert details == [
        "ports p80:9090/TCP in the input, p80:8080/TCP from its Pods (pod a)",
        "ports p80:9090/TCP in the input, p80:8080/TCP from its Pods (pod b)",
    ]


def test_slices_of_another_manager_are_not_compared() -> None:
    (sl,) = copy.deepcopy(written())
    sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "someone-else"
    code, out, _ = endpoints("--compare", objects=live([sl]))
    assert code == 1 and out.count("missing") == 2


def test_compare_needs_pods() -> None:
    code, _, err = endpoints("--compare", objects=[web_service()])
    assert code == 2
    assert err.startswith("error: --compare: the input has no Pods to compare its EndpointSlices with")


def test_invalid_input_is_exit_2() -> None:
    bad = pod("p", "10.180.0.300")
    code, out, err = endpoints("--compare", objects=[web_service(), bad])
    assert (code, out) == (2, "")
    assert err == (
        '<stdin>: Pod ns1/p: status.podIP: Invalid value: "10.180.0.300": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)\n"
    )
