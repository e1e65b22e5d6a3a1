"""`explain --service` and the why of a flow explain: for a Service without (ready) endpoints, what
its selector matches and why each matching Pod is left out or not ready."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml
from tests.unit.derive_helpers import node, pod, web_service

runner = CliRunner()
NAMED = web_service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
WEB_PORT = [{"name": "web", "containerPort": 8080}]


def why(*objects: dict[str, Any], name: str = "ns1/svc1") -> tuple[int, str]:
    result = runner.invoke(app, ["explain", "--service", name], input=to_yaml(*objects))
    return result.exit_code, result.stdout


def why_json(*objects: dict[str, Any], name: str = "ns1/svc1") -> dict[str, Any]:
    result = runner.invoke(app, ["explain", "--service", name, "-o", "json"], input=to_yaml(*objects))
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_selector_matching_nothing_names_the_closest_pods_and_other_namespaces() -> None:
    svc = web_service(selector={"app": "web", "tier": "front"})
    code, out = why(
        svc,
        pod("case", "10.180.0.1", labels={"app": "Web", "tier": "front"}),
        pod("value", "10.180.0.2", labels={"app": "web", "tier": "back"}),
        pod("missing", "10.180.0.3", labels={"app": "web"}),
        pod("far", "10.180.0.4", labels={"app": "db"}),
        pod("elsewhere", "10.180.0.5", labels={"app": "web", "tier": "front"}, namespace="ns2"),
    )
    assert code == 0
    assert out.splitlines() == [
        "why:           ns1/svc1 has no endpoints: no Pod in namespace ns1 matches selector app=web,tier=front",
        "               endpoints: the input has no EndpointSlice, Endpoints or matching Pod for it",
        "               pods: 0 of the Pods in namespace ns1 match selector app=web,tier=front",
        "               closest: case: labels differ in case only (app=Web; selector app=web)",
        "               closest: value: label tier=back instead of tier=front",
        "               closest: missing: lacks label tier=front",
        "               in other namespaces, matching the selector: ns2/elsewhere",
    ]


def test_an_input_without_pods_says_so() -> None:
    _, out = why(web_service())
    assert "the input has no EndpointSlice, Endpoints or Pod for it" in out.splitlines()[0]
    assert "pods: the input has no Pods (kubectl get pods,nodes,svc -A -o yaml includes them)" in out


def test_a_not_ready_pod_names_the_conditions_that_keep_it_from_ready() -> None:
    p = pod("p", ready=None)
    p["status"]["conditions"] = [
        {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": "[main]"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
    ]
    _, out = why(web_service(), p)
    assert out.splitlines()[0] == "why:           ns1/svc1: no ready endpoint for port(s) p80"
    assert (
        "pod p (10.180.0.1 on node1): not Ready: ContainersReady is False (ContainersNotReady: [main]); "
        "Ready is False (ContainersNotReady)"
    ) in out
    assert "port p80/TCP (targetPort 8080): 1 endpoint(s), 0 ready" in out


def test_a_pod_without_a_ready_condition() -> None:
    _, out = why(web_service(), pod("p", ready=None))
    assert "pod p (10.180.0.1 on node1): not Ready: no Ready condition yet (not started?)" in out


def test_a_terminating_pod() -> None:
    data = why_json(web_service(), pod("p", deleting=True))
    assert data["pods"] == [
        {
            "pod": "p",
            "state": "terminating",
            "where": "10.180.0.1 on node1",
            "detail": "terminating (deletionTimestamp set): still serving, used only while no endpoint is ready",
        }
    ]


def test_pods_left_out_without_an_ip_in_a_terminal_phase_or_on_an_unknown_node() -> None:
    data = why_json(
        web_service(),
        pod("starting", None, ready=False, phase="Pending"),
        pod("done", "10.180.0.2", phase="Succeeded"),
        pod("crashed", "10.180.0.3", phase="Failed"),
        pod("lost", "10.180.0.4", node="node9"),
        node("node1"),
    )
    assert {p["pod"]: p["detail"] for p in data["pods"]} == {
        "crashed": "not an endpoint: its phase is Failed",
        "done": "not an endpoint: its phase is Succeeded",
        "lost": "not an endpoint: its Node node9 is not among the input's Nodes",
        "starting": "not an endpoint: it has no IP yet",
    }
    assert data["summary"] == "ns1/svc1 has no endpoints: none of the 4 matching Pod(s) is one"


def test_a_named_target_port_missing_from_the_containers() -> None:
    data = why_json(NAMED, pod("has", "10.180.0.1", ports=WEB_PORT), pod("lacks", "10.180.0.2"))
    assert data["ports"] == [
        {
            "name": "http",
            "protocol": "TCP",
            "targetPort": "web",
            "endpoints": 1,
            "ready": 1,
            "missingIn": ["lacks"],
        }
    ]
    _, out = why(NAMED, pod("lacks", "10.180.0.2"))
    assert "ns1/svc1: no endpoint for port(s) http" in out.splitlines()[0]
    assert "port http/TCP (targetPort web): 0 endpoint(s), 0 ready; no container port web/TCP in lacks" in out


def test_ready_endpoints_everywhere() -> None:
    data = why_json(NAMED, pod("has", ports=WEB_PORT))
    assert data["summary"] == "ns1/svc1 has ready endpoints on every port"
    assert data["endpointSource"] == "Pods" and data["matchingPods"] == 1


def test_the_inputs_slices_win_and_are_what_is_explained() -> None:
    sl = endpoint_slice("svc1", endpoints=[endpoint("10.180.0.9", ready=False)])
    data = why_json(web_service(), sl, pod("p"))
    assert data["endpointSource"] == "EndpointSlices"
    assert data["summary"] == "ns1/svc1: no ready endpoint for port(s) p80"
    assert data["pods"] == []


def test_a_service_without_a_selector() -> None:
    _, out = why(service())
    assert out.splitlines() == [
        "why:           ns1/svc1 has no selector: its endpoints come only from EndpointSlices (or Endpoints) "
        "made for it, and the input has none"
    ]


def test_an_unknown_service_is_a_failure_naming_one_of_that_name() -> None:
    code, out = why(web_service(), name="ns2/svc1")
    assert code == 1
    assert out == "why:           the input has no Service ns2/svc1 (a Service of that name: ns1/svc1)\n"


def test_a_bare_name_is_in_namespace_default() -> None:
    code, out = why(web_service(), name="svc1")
    assert code == 1 and "no Service default/svc1" in out


def test_json_keys_are_stable() -> None:
    assert set(why_json(web_service())) == {
        "service",
        "found",
        "type",
        "selector",
        "endpointSource",
        "podsInInput",
        "matchingPods",
        "pods",
        "closest",
        "otherNamespaces",
        "ports",
        "summary",
    }


def test_service_and_a_connection_are_exclusive() -> None:
    result = runner.invoke(app, ["explain", "--service", "ns1/svc1", "--port", "80"], input="")
    assert result.exit_code == 2
    assert "--service explains a Service, not a connection" in result.stderr
    result = runner.invoke(app, ["explain", "--src", "10.0.0.1"], input="")
    assert result.exit_code == 2 and "--src, --dst and --port are needed" in result.stderr


# -- the why of a flow explain -------------------------------------------------------------------


QUERY = ["--src", "10.180.5.5", "--dst", "172.30.0.41", "--port", "80"]


def flow(*objects: dict[str, Any], output: str = "text") -> str:
    result = runner.invoke(app, ["explain", *NODE_ARGS, *QUERY, "-o", output], input=to_yaml(*objects))
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_a_rejected_connection_says_why_the_service_has_no_endpoints() -> None:
    out = flow(NAMED, pod("lacks", "10.180.0.2"))
    assert "verdict:       REJECT: ns1/svc1:http has no endpoints" in out
    assert "why:           ns1/svc1: no endpoint for port(s) http" in out
    assert (
        "why:           port http/TCP (targetPort web): 0 endpoint(s), 0 ready; no container port web/TCP in lacks"
        in out
    )


def test_a_connection_to_terminating_endpoints_only_says_why() -> None:
    data = json.loads(flow(web_service(), pod("p", deleting=True), output="json"))
    assert data["verdict"] == "dnat"
    assert data["why"][0] == "ns1/svc1: no ready endpoint for port(s) p80"


def test_a_connection_with_ready_endpoints_has_no_why() -> None:
    data = json.loads(flow(web_service(), pod("p"), output="json"))
    assert data["verdict"] == "dnat" and data["why"] == []


def test_a_headless_service_without_ports_counts_its_endpoints() -> None:
    svc = web_service(clusterIP="None", ports=[])
    data = why_json(svc, pod("a"), pod("b", "10.180.0.2", ready=False))
    assert data["summary"] == "ns1/svc1 has 2 endpoint(s) without ports, 1 ready"
