"""Hostile or malformed input is refused the way the API server refuses it: one line per problem
on stderr naming the file, the object and the field (or the flag), exit 2, no traceback, nothing
on stdout, every other problem of the run still reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml

runner = CliRunner()
INJECTION = 'fe80::%x" -j ACCEPT\n-A INPUT -j ACCEPT #/64'


def refused(*args: str, stdin: str | None = None) -> list[str]:
    result = runner.invoke(app, ["compile", *args], input=stdin)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_source_range_carrying_a_rule_in_a_zone_is_refused_at_its_field(tmp_path: Path) -> None:
    manifest = write(
        tmp_path, "lb.yaml", to_yaml(service(type="LoadBalancer", loadBalancerSourceRanges=[INJECTION]))
    )
    assert refused("-f", manifest, *NODE_ARGS) == [
        f"{manifest}: Service ns1/svc1: spec.loadBalancerSourceRanges[0]: Invalid value: "
        '"fe80::%x\\" -j ACCEPT\\n-A INPUT -j ACCEPT #/64": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"
    ]


def test_a_huge_integer_is_reported_at_its_field_with_every_other_problem(tmp_path: Path) -> None:
    huge = "1" * 5000
    as_json = write(
        tmp_path,
        "a.json",
        json.dumps(service(name="a")).replace('"port": 80', f'"port": {huge}'),
    )
    as_yaml = write(tmp_path, "b.yaml", to_yaml(service(name="b")).replace("port: 80", f"port: {huge}"))
    other = write(tmp_path, "c.yaml", to_yaml(service(name="c", clusterIP="300.0.0.1")))
    lines = refused("-f", as_json, "-f", as_yaml, "-f", other, *NODE_ARGS)
    assert (
        lines[0]
        == f"{as_json}: Service ns1/a: spec.ports[0].port: Invalid value: <an integer of 5000 digits>: out of range"
    )
    assert lines[1].startswith(f'{as_yaml}: Service ns1/b: spec.ports[0].port: Invalid value: "1111')
    assert lines[1].endswith("...: must be an integer")
    assert lines[2].startswith(f'{other}: Service ns1/c: spec.clusterIP: Invalid value: "300.0.0.1"')
    assert len(lines) == 3


def test_a_duplicated_key_and_a_base_60_number_are_refused(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns1}\nspec:\n"
    duplicated = write(
        tmp_path, "d.yaml", text + "  clusterIP: 172.30.0.1\n  clusterIP: 172.30.0.2\n  ports: [{port: 80}]\n"
    )
    base60 = write(
        tmp_path, "s.yaml", text.replace("web", "web2") + "  clusterIP: 172.30.0.3\n  ports: [{port: 1:20}]\n"
    )
    assert refused("-f", duplicated, "-f", base60, *NODE_ARGS) == [
        f'{duplicated}: Service ns1/web: spec.clusterIP: Duplicate value: "clusterIP": set twice (lines 5 and 6); '
        "a key may appear once in a mapping",
        f'{base60}: Service ns1/web2: spec.ports[0].port: Invalid value: "1:20": must be an integer',
    ]


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    manifest = write(tmp_path, "e.json", json.dumps(service(name="a\x07\x1b]0;owned\x07b")))
    (line,) = refused("-f", manifest, *NODE_ARGS)
    assert "\x07" not in line and "\x1b" not in line
    assert line.startswith(
        f"{manifest}: Service ns1/a\\x07\\x1b]0;owned\\x07b: metadata.name: Invalid value: "
    )


def test_input_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    manifest = write(tmp_path, "big.yaml", to_yaml(service(), endpoint_slice()))
    size = Path(manifest).stat().st_size
    assert refused("-f", manifest, "--max-input-bytes", str(size - 1), *NODE_ARGS) == [
        f"{manifest}: input over the size limit of {size - 1} bytes: {size} bytes (raise it with --max-input-bytes)"
    ]
    result = runner.invoke(app, ["compile", "-f", manifest, "--max-input-bytes", str(size), *NODE_ARGS])
    assert result.exit_code == 0, result.stderr


def test_a_v1beta1_endpoint_slice_gives_its_service_endpoints(tmp_path: Path) -> None:
    old_slice = {**endpoint_slice(), "apiVersion": "discovery.k8s.io/v1beta1"}
    manifest = write(tmp_path, "old.yaml", to_yaml(service(), old_slice))
    result = runner.invoke(app, ["compile", "-f", manifest, *NODE_ARGS])
    assert result.exit_code == 0, result.stderr
    assert "DNAT --to-destination 10.180.0.1:8080" in result.stdout
    assert "skipped" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-ip", "fe80::1%x -j ACCEPT"], 'error: --node-ip: invalid IP address "fe80::1%x -j ACCEPT"'),
        (["--cluster-cidr", "fe80::%x/64"], 'error: --cluster-cidr: invalid CIDR "fe80::%x/64"'),
        (
            ["--cluster-cidr", "10.0.0.0/255.0.0.0"],
            'error: --cluster-cidr: invalid CIDR "10.0.0.0/255.0.0.0"',
        ),
        (
            ["--node-name", "node_1"],
            'error: --node-name: invalid node name "node_1": a lowercase RFC 1123 subdomain',
        ),
        (["--node-name", "n" * 254], "must be no more than 253 characters"),
        (
            ["--backend", "dns", "--dns-server-ip", "fe80::1%x"],
            'error: --dns-server-ip: invalid IP address "fe80::1%x"',
        ),
    ],
)
def test_flags_are_held_to_what_the_api_server_accepts(args: list[str], message: str) -> None:
    (line,) = refused(*args, stdin=to_yaml(service(), endpoint_slice()))
    assert message in line


@pytest.mark.parametrize(
    ("field", "value"), [("clusterCIDR", '"fe80::%x/64"'), ("nodePortAddresses", '["fe80::%x/64"]')]
)
def test_config_file_addresses_with_a_zone_are_refused(tmp_path: Path, field: str, value: str) -> None:
    config = write(
        tmp_path,
        "kp.yaml",
        f"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n{field}: {value}\n",
    )
    (line,) = refused("--config", config, stdin=to_yaml(service(), endpoint_slice()))
    assert line == f'error: {config}: KubeProxyConfiguration: {field}: invalid CIDR "fe80::%x/64"'
