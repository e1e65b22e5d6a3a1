"""`svc2rules explain`: text for people, JSON with stable keys for machines, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml

runner = CliRunner()
MANIFEST = to_yaml(
    service("web", clusterIP="172.30.0.41", ports=[{"name": "http", "port": 80, "targetPort": 8080}]),
    endpoint_slice("web", endpoints=[endpoint("10.180.0.1")], ports=[{"name": "http", "port": 8080}]),
)
QUERY = ["--src", "203.0.113.1", "--dst", "172.30.0.41", "--port", "80", "--proto", "tcp"]


def explain_(*args: str, stdin: str = MANIFEST) -> tuple[int, str, str]:
    result = runner.invoke(app, ["explain", *NODE_ARGS, *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_text_names_the_match_the_verdict_masquerade_and_endpoints() -> None:
    code, out, err = explain_(*QUERY)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("connection 203.0.113.1 -> 172.30.0.41:80/TCP from external")
    assert "matched:       172.30.0.41:80/TCP is the ClusterIP of ns1/web:http" in lines
    assert "verdict:       DNAT to one of 1 endpoint(s) of ns1/web:http" in lines
    assert any(line.startswith("masquerade:    yes: off-cluster source 203.0.113.1") for line in lines)
    assert any(line.startswith("  10.180.0.1:8080  p=1.0000  local, ready") for line in lines)


def test_json_has_stable_keys() -> None:
    code, out, err = explain_(*QUERY, "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {
        "query",
        "verdict",
        "reason",
        "match",
        "steps",
        "masquerade",
        "affinity",
        "endpoints",
        "notes",
        "why",
    }
    assert set(data["query"]) == {"src", "dst", "port", "protocol", "from", "fromReason"}
    assert set(data["match"]) == {
        "namespace",
        "service",
        "portName",
        "servicePort",
        "frontend",
        "address",
        "port",
        "protocol",
    }
    assert set(data["endpoints"][0]) == {
        "address",
        "ip",
        "port",
        "probability",
        "local",
        "node",
        "ready",
        "serving",
        "terminating",
        "masquerade",
        "hairpin",
    }
    assert data["verdict"] == "dnat" and data["masquerade"]["applies"] is True
    assert out == explain_(*QUERY, "-o", "json")[1]  # sorted keys: byte-stable


def test_no_match_and_reject_are_answers_not_errors() -> None:
    code, out, _ = explain_("--src", "10.180.0.9", "--dst", "172.30.0.41", "--port", "81", "-o", "json")
    assert code == 0 and json.loads(out)["verdict"] == "none"
    empty = to_yaml(service("web", clusterIP="172.30.0.41", ports=[{"name": "http", "port": 80}]))
    code, out, _ = explain_(*QUERY, "-o", "json", stdin=empty)
    assert code == 0 and json.loads(out)["verdict"] == "reject"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--src", "203.0.113.300", "--dst", "172.30.0.41", "--port", "80"],
            "error: --src: invalid IP address",
        ),
        (["--src", "203.0.113.1", "--dst", "fd00::1", "--port", "80"], "error: --src and --dst must be"),
        (["--src", "203.0.113.1", "--dst", "172.30.0.41", "--port", "0"], "error: --port must be between"),
        (
            ["--src", "203.0.113.1", "--dst", "172.30.0.41", "--port", "80", "--proto", "icmp"],
            "error: --proto",
        ),
        (["--src", "203.0.113.1", "--dst", "172.30.0.41", "--port", "80", "--from", "mars"], "error: --from"),
        (["--src", "203.0.113.1", "--dst", "172.30.0.41", "--port", "80", "-o", "yaml"], "error: --output"),
    ],
)
def test_bad_queries_are_one_line_on_stderr_and_exit_2(args: list[str], message: str) -> None:
    code, out, err = explain_(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(message), err


def test_bad_manifests_name_the_file_object_and_field() -> None:
    bad = to_yaml(service("web", clusterIP="172.30.0.999"))
    code, out, err = explain_(*QUERY, stdin=bad)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Service ns1/web" in err and "spec.clusterIP" in err, err
