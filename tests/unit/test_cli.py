"""The command-line contract scripts depend on: inputs, outputs, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from svc2rules import __version__
from svc2rules.cli import app
from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml

runner = CliRunner()
MANIFEST = to_yaml(service(), endpoint_slice())


def compile_(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["compile", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"svc2rules {__version__}\n"


def test_reads_stdin_by_default_and_with_dash() -> None:
    code, out, _ = compile_(*NODE_ARGS, stdin=MANIFEST)
    assert code == 0 and "SVC2R-SVC-" in out
    assert compile_("-f", "-", *NODE_ARGS, stdin=MANIFEST)[1] == out


def test_reads_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(to_yaml(service()))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "slice.json").write_text(json.dumps(endpoint_slice()))
    (tmp_path / "notes.txt").write_text("not a manifest")
    code, flat, _ = compile_("-f", str(tmp_path), *NODE_ARGS)
    assert code == 0 and "has no endpoints" in flat  # the slice in sub/ is not read without -R
    code, recursive, _ = compile_("-f", str(tmp_path), "-R", *NODE_ARGS)
    assert code == 0 and "DNAT --to-destination 10.180.0.1:8080" in recursive


def test_several_files_combine(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(to_yaml(service()))
    (tmp_path / "b.yaml").write_text(to_yaml(endpoint_slice()))
    code, out, _ = compile_("-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml"), *NODE_ARGS)
    assert code == 0 and "DNAT --to-destination 10.180.0.1:8080" in out


def test_invalid_input_exits_2_with_nothing_on_stdout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(to_yaml(service(ports=[{"name": "p", "port": 0}])))
    code, out, err = compile_("-f", str(bad), *NODE_ARGS)
    assert code == 2
    assert out == ""
    assert (
        err
        == f"{bad}: Service ns1/svc1: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n"
    )


def test_missing_file_exits_2() -> None:
    code, out, err = compile_("-f", "/nonexistent/x.yaml", *NODE_ARGS)
    assert (code, out) == (2, "") and err == "/nonexistent/x.yaml: no such file or directory\n"


def test_unknown_backend_is_a_usage_error() -> None:
    code, out, err = compile_("--backend", "pf", *NODE_ARGS, stdin=MANIFEST)
    assert code == 2 and out == "" and "unknown backend 'pf'" in err


def test_bad_flag_values_are_usage_errors() -> None:
    for args in (
        ["--node-ip", "1.2.3"],
        ["--cluster-cidr", "10.0.0.0/99"],
        ["--cluster-cidr", "10.0.0.0/8,11.0.0.0/8"],
    ):
        code, out, err = compile_(*args, stdin=MANIFEST)
        assert code == 2 and out == "" and err.startswith("error: "), (args, err)


def test_warnings_go_to_stderr_and_do_not_fail() -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns1}\n---\n"
    code, out, err = compile_(*NODE_ARGS, stdin=pod + MANIFEST)
    assert code == 0 and "SVC2R-" in out
    assert err == "warning: <stdin>: Pod ns1/p: skipped: svc2rules does not read v1 Pod\n"


def test_ir_output_is_json() -> None:
    code, out, _ = compile_("-o", "ir", *NODE_ARGS, stdin=MANIFEST)
    data = json.loads(out)
    assert code == 0
    assert data["servicePorts"][0]["key"] == "ns1/svc1:p80"
    assert data["config"]["node_name"] == "node1"


def test_config_file_supplies_settings_and_flags_override(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        "clusterCIDR: 10.0.0.0/8\nhostnameOverride: node1\niptables: {masqueradeAll: true, masqueradeBit: 10}\n"
    )
    code, out, _ = compile_("--config", str(config), "-o", "ir", stdin=MANIFEST)
    data = json.loads(out)["config"]
    assert code == 0
    assert (data["node_name"], data["masquerade_all"], data["masquerade_bit"]) == ("node1", True, 10)
    code, out, _ = compile_(
        "--config", str(config), "--no-masquerade-all", "--node-name", "n2", "-o", "ir", stdin=MANIFEST
    )
    data = json.loads(out)["config"]
    assert (data["node_name"], data["masquerade_all"]) == ("n2", False)


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text("apiVersion: v1\nkind: ConfigMap\n")
    code, out, err = compile_("--config", str(config), stdin=MANIFEST)
    assert code == 2 and out == "" and "KubeProxyConfiguration: kind" in err


def test_console_script_has_no_traceback_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"apiVersion": "v1", "kind": "Service", "spec": ')
    proc = subprocess.run(
        [sys.executable, "-m", "svc2rules", "compile", "-f", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_nft_layout_selects_the_kube_proxy_compatible_layout() -> None:
    code, grouped, _ = compile_("--backend", "nftables", *NODE_ARGS, stdin=MANIFEST)
    assert code == 0 and "-ns1/svc1/tcp/p80" not in grouped
    code, compatible, _ = compile_(
        "--backend", "nftables", "--nft-layout", "kube-proxy", *NODE_ARGS, stdin=MANIFEST
    )
    assert code == 0
    # kube-proxy's per-Service chain naming: hash8-ns/svc/proto/port.
    assert "-ns1/svc1/tcp/p80" in compatible
    code, out, err = compile_("--backend", "nftables", "--nft-layout", "flat", *NODE_ARGS, stdin=MANIFEST)
    assert (code, out) == (2, "") and "unknown nftables layout 'flat'" in err
