"""Pods and Nodes as input: read and validated like the other kinds (file, object, field, one
line per problem, exit 2), lists included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, to_yaml
from tests.unit.derive_helpers import node, pod, web_service

runner = CliRunner()


def compile_(*objects: dict[str, Any], stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(
        app, ["compile", *NODE_ARGS], input=stdin if stdin is not None else to_yaml(*objects)
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_pod_with_an_invalid_ip_is_one_line_exit_2() -> None:
    """validatePodIPs (pkg/apis/core/validation): every podIPs entry a valid IP."""
    code, out, err = compile_(web_service(), pod("p", None, ips=["10.180.0.300"]))
    assert (code, out) == (2, "")
    assert err == (
        '<stdin>: Pod ns1/p: status.podIPs[0].ip: Invalid value: "10.180.0.300": must be a valid IP '
        "address, (e.g. 10.9.8.7 or 2001:db8::ffff)\n"
    )


def test_a_pod_ip_that_is_not_the_first_pod_ips_is_one_line_exit_2() -> None:
    """The API server never stores such a Pod (v1 conversion keeps podIP and drops the list)."""
    code, out, err = compile_(web_service(), pod("p", "10.180.0.1", ips=["10.180.0.2"]))
    assert (code, out) == (2, "")
    assert (
        err
        == '<stdin>: Pod ns1/p: status.podIPs[0].ip: Invalid value: "10.180.0.2": must be equal to `podIP`\n'
    )


def test_two_ips_of_one_family_is_one_line() -> None:
    """validatePodIPs: at most one IP for each IP family."""
    code, _, err = compile_(web_service(), pod("p", "10.180.0.1", ips=["10.180.0.1", "10.180.0.2"]))
    assert code == 2
    assert err == (
        '<stdin>: Pod ns1/p: status.podIPs: Invalid value: [{"ip": "10.180.0.1"}, {"ip": "10.180.0.2"}]: '
        "may specify no more than one IP for each IP family\n"
    )


def test_duplicate_pods_are_one_line_each() -> None:
    code, out, err = compile_(web_service(), pod("p"), pod("p", "10.180.0.2"), pod("p", "10.180.0.3"))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "<stdin>: Pod ns1/p: metadata.name: Duplicate value: object already defined in <stdin>",
        "<stdin>: Pod ns1/p: metadata.name: Duplicate value: object already defined in <stdin>",
    ]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"spec": {"containers": [{"name": "c", "ports": [{"name": "Web", "containerPort": 80}]}]}},
            'spec.containers[0].ports[0].name: Invalid value: "Web": must contain only alpha-numeric '
            "characters (a-z, 0-9), and hyphens (-)",
        ),
        (
            {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 70000}]}]}},
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            {"spec": {"containers": [{"name": "c", "ports": [{"name": "web"}]}]}},
            "spec.containers[0].ports[0].containerPort: Required value",
        ),
        (
            {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "ICMP"}]}]}},
            'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        ),
        (
            {"spec": {"containers": [], "hostname": "Web_0"}},
            'spec.hostname: Invalid value: "Web_0": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ),
        (
            {"spec": {"containers": [], "initContainers": [{"name": "i", "restartPolicy": "Never"}]}},
            'spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"',
        ),
        ({"status": {"podIP": 5}}, "status.podIP: Invalid value: 5: must be a string"),
    ],
    ids=["port name", "port number", "no port number", "protocol", "hostname", "init restartPolicy", "type"],
)
def test_pod_fields_are_validated_as_the_api_server_does(change: dict[str, Any], line: str) -> None:
    p = pod("p")
    for part, values in change.items():
        p[part] = {**p[part], **values}
    code, _, err = compile_(web_service(), p)
    assert code == 2
    assert err == f"<stdin>: Pod ns1/p: {line}\n"


def test_a_node_with_an_invalid_name_or_address() -> None:
    bad = node("Node_1")
    bad["status"]["addresses"] = [
        {"type": "InternalIP", "address": "192.168.0.300"},
        {"type": "Hostname", "address": "n1"},
    ]
    code, _, err = compile_(web_service(), bad)
    assert code == 2
    assert err.splitlines() == [
        '<stdin>: Node default/Node_1: metadata.name: Invalid value: "Node_1": a lowercase RFC 1123 subdomain '
        "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character",
        '<stdin>: Node default/Node_1: status.addresses[0].address: Invalid value: "192.168.0.300": must be a '
        "valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
    ]


def test_kubectl_lists_of_pods_and_nodes_are_read() -> None:
    """`kubectl get pods,nodes,svc -A -o json`: a List; typed PodList/NodeList too."""
    as_list = json.dumps({"apiVersion": "v1", "kind": "List", "items": [web_service(), pod("a")]})
    code, out, err = compile_(stdin=as_list)
    assert code == 0, err
    assert "10.180.0.1" in out
    pod_list = {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{k: v for k, v in pod("a").items() if k not in ("apiVersion", "kind")}],
    }
    node_list = {"apiVersion": "v1", "kind": "NodeList", "items": [node("node1")]}
    code, out2, err = compile_(stdin=to_yaml(web_service(), pod_list, node_list))
    assert code == 0, err
    assert out2 == out


def test_a_status_with_only_pod_ip_is_read_as_pod_ips() -> None:
    code, out, _ = compile_(web_service(), pod("a", "10.180.0.7"))
    assert code == 0 and "10.180.0.7:8080" in out
