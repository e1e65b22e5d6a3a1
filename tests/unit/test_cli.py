"""The command-line contract scripts depend on: inputs, outputs, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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
    pod = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p, namespace: ns1}\n---\n"
    code, out, err = compile_(*NODE_ARGS, stdin=pod + MANIFEST)
    assert code == 0 and "SVC2R-" in out
    assert err == "warning: <stdin>: ConfigMap ns1/p: skipped: svc2rules does not read v1 ConfigMap\n"


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
    config.write_text("apiVersion: apps/v1\nkind: Deployment\n")
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


# -- node facts -------------------------------------------------------------------------------


def test_compile_without_node_facts_warns_what_each_missing_fact_changes() -> None:
    code, out, err = compile_(stdin=MANIFEST)
    assert code == 0 and "SVC2R-SVC-" in out
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("warning: ") for line in lines), err
    assert "no node name (--node-name" in lines[0] and "externalTrafficPolicy" in lines[0]
    assert "can't determine this node's IP (--node-ip" in lines[1] and "NodePorts" in lines[1]
    assert "no cluster CIDR specified (--cluster-cidr" in lines[2] and "masqueraded" in lines[2]


def test_compile_with_every_node_fact_says_nothing() -> None:
    assert compile_(*NODE_ARGS, stdin=MANIFEST)[2] == ""


def test_dns_records_need_no_node_facts() -> None:
    code, out, err = compile_("--backend", "dns", stdin=MANIFEST)
    assert (code, err) == (0, "") and "svc1.ns1.svc" in out


def test_the_config_file_supplies_node_facts_too(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text(f"{KP}clusterCIDR: 10.0.0.0/8\nhostnameOverride: node1\nbindAddress: 192.168.0.2\n")
    code, out, err = compile_("--config", str(config), stdin=MANIFEST)
    assert (code, err) == (0, "")
    assert out == compile_(*NODE_ARGS, stdin=MANIFEST)[1]


def test_an_input_without_services_is_warned() -> None:
    code, out, err = compile_(*NODE_ARGS, stdin="")
    assert code == 0 and out
    assert err == (
        "warning: <stdin>: no Service objects: the output has no Service rules, and loading it "
        "removes every Service's (a failed kubectl, a folder read without -R?)\n"
    )


def test_services_without_any_endpoint_object_are_warned_with_the_likely_cause() -> None:
    services = [service(f"svc{i}", clusterIP=f"172.30.0.{i + 1}") for i in range(4)]
    code, out, err = compile_(*NODE_ARGS, stdin=to_yaml(*services))
    assert code == 0 and "has no endpoints" in out
    assert err == (
        "warning: <stdin>: none of the 4 Service(s) (ns1/svc0, ns1/svc1, ns1/svc2, ...) has an "
        "EndpointSlice, Endpoints or matching Pod in the input, so every Service with a selector rejects "
        "its traffic; the kubectl command probably lacks endpointslices (kubectl get "
        "svc,endpointslices -A -o yaml)\n"
    )
    # One Service with an EndpointSlice is enough to say the input has them.
    assert compile_(*NODE_ARGS, stdin=to_yaml(*services, endpoint_slice("svc0")))[2] == ""


def test_invalid_input_gets_its_errors_alone() -> None:
    code, out, err = compile_(stdin=to_yaml(service(ports=[{"name": "p", "port": 0}])))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "spec.ports[0].port" in err


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chain-prefix", "my prefix"], "error: --chain-prefix: "),
        (["--chain-prefix", "TOOLONGPREFIX"], "error: --chain-prefix: "),
        # Eight characters would make endpoint chains of 29: one more than the kernel takes.
        (["--chain-prefix", "ABCDEFGH"], "error: --chain-prefix: must be 1-7 letters"),
        (["--table", "my table"], "error: --table: invalid table name"),
        (["--node-ip", "192.168.0.300"], 'error: --node-ip: invalid IP address "192.168.0.300"'),
        (["--node-name", ""], "error: --node-name: invalid node name"),
        (["--hostname-override", " "], "error: --node-name: invalid node name"),
        (["--cluster-cidr", "10.0.0.0/99"], 'error: --cluster-cidr: invalid CIDR "10.0.0.0/99"'),
        (["--cluster-cidr", "10.0.0.0/8,11.0.0.0/8"], "error: --cluster-cidr: at most one cluster CIDR"),
        (["--nodeport-addresses", "everywhere"], 'error: --nodeport-addresses: invalid CIDR "everywhere"'),
        (["--backend", "pf"], "error: --backend: unknown backend 'pf'"),
        (["--proxy-mode", "kernelspace"], "error: --backend: unknown backend 'kernelspace'"),
        (["-o", "xml"], "error: --output must be one of rules, json, yaml, ir"),
        (["--nft-layout", "flat"], "error: --nft-layout: unknown nftables layout 'flat'"),
        (["--backend", "dns", "--dns-format", "bind"], "error: --dns-format must be one of zone, hosts"),
        (["--comments", "sometimes"], "Invalid value for '--comments'"),
        (["--no-such-flag"], "No such option: --no-such-flag"),
        (["--node-ip"], "Option '--node-ip' requires an argument"),
    ],
)
def test_every_usage_error_exits_2_naming_the_flag(args: list[str], message: str) -> None:
    code, out, err = compile_(*NODE_ARGS, *args, stdin=MANIFEST)
    assert (code, out) == (2, ""), err
    assert message in err and "internal error" not in err, err


@pytest.mark.parametrize("command", ["apply", "diff", "cleanup"])
def test_host_commands_name_bad_flags_before_touching_anything(command: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = runner.invoke(
        app, [command, "--state-dir", str(state), "--chain-prefix", "my prefix"], input=MANIFEST
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: --chain-prefix: "), result.stderr
    assert not state.exists()


def test_a_cidr_with_host_bits_is_warned_and_used_as_its_network() -> None:
    cidr = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr"]
    code, out, err = compile_(*cidr, "10.0.0.1/8", stdin=MANIFEST)
    assert code == 0 and out == compile_(*cidr, "10.0.0.0/8", stdin=MANIFEST)[1]
    assert (
        err == "warning: --cluster-cidr: 10.0.0.1/8 has host bits set; using 10.0.0.0/8, as kube-proxy does\n"
    )


# -- names that are kube-proxy's ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["--chain-prefix", "KUBE"],
            "--chain-prefix KUBE: KUBE-* are kube-proxy's (and the kubelet's) chains",
        ),
        (
            ["--chain-prefix", "KUBE-X"],
            "--chain-prefix KUBE-X: KUBE-* are kube-proxy's (and the kubelet's) chains",
        ),
        (["--table", "kube-proxy"], "--table kube-proxy: kube-proxy's nftables table"),
        (["--table", "nat"], "--table nat: iptables-nft's table"),
    ],
)
def test_kube_proxys_names_need_force_to_be_written(args: list[str], named: str, tmp_path: Path) -> None:
    code, out, err = compile_(*NODE_ARGS, *args, stdin=MANIFEST)
    assert code == 0 and out and err == f"warning: {named}; loading this output replaces them\n"
    for command in ("apply", "cleanup"):
        state = tmp_path / command
        argv = [command, "--state-dir", str(state), *args]
        result = runner.invoke(app, [*argv, *(NODE_ARGS if command == "apply" else [])], input=MANIFEST)
        assert result.exit_code == 2, result.stderr
        assert (
            result.stderr
            == f"error: {named}; svc2rules would replace or remove its rules (--force to do it anyway)\n"
        )
        assert not state.exists()


def test_force_lets_a_kube_proxy_name_through(tmp_path: Path) -> None:
    # Past the name check, a dry run needs no privileges: it reads no kernel state.
    result = runner.invoke(
        app,
        ["apply", "--dry-run", "--state-dir", str(tmp_path), "--chain-prefix", "KUBE", "--force", *NODE_ARGS],
        input=MANIFEST,
    )
    assert "--chain-prefix KUBE" not in result.stderr, result.stderr


# -- output formats -----------------------------------------------------------------------------


def test_json_and_yaml_print_the_resolved_model_and_ir_is_json() -> None:
    code, ir, _ = compile_("-o", "ir", *NODE_ARGS, stdin=MANIFEST)
    assert code == 0
    assert compile_("-o", "json", *NODE_ARGS, stdin=MANIFEST)[1] == ir
    code, text, _ = compile_("--output", "yaml", *NODE_ARGS, stdin=MANIFEST)
    assert code == 0 and yaml.safe_load(text) == json.loads(ir)


# -- the config file ----------------------------------------------------------------------------

KP = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"


def test_a_misspelled_config_field_is_named_and_strict_config_refuses_it(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text(f"{KP}clusterCidr: 10.0.0.0/8\n")
    code, out, err = compile_("--config", str(config), *NODE_ARGS, stdin=MANIFEST)
    assert code == 0 and out == compile_(*NODE_ARGS, stdin=MANIFEST)[1]
    assert err == (
        f"warning: {config}: KubeProxyConfiguration: clusterCidr: unknown field (did you mean "
        "'clusterCIDR'?); ignored (--strict-config refuses it)\n"
    )
    code, out, err = compile_("--config", str(config), "--strict-config", *NODE_ARGS, stdin=MANIFEST)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {config}: KubeProxyConfiguration: clusterCidr: unknown field (did you mean "
        "'clusterCIDR'?) (--strict-config)\n"
    )


def test_an_invalid_config_value_names_the_file_the_field_and_the_value(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text(f"{KP}mode: kernelspace\n")
    code, out, err = compile_("--config", str(config), *NODE_ARGS, stdin=MANIFEST)
    assert (code, out) == (2, "")
    assert err.startswith(f'error: {config}: KubeProxyConfiguration: mode: Unsupported value: "kernelspace"')
    config.write_text(f"{KP}clusterCIDR: 10.0.0.0/99\n")
    code, out, err = compile_("--config", str(config), stdin=MANIFEST)
    assert (code, out) == (2, "")
    assert err == f'error: {config}: KubeProxyConfiguration: clusterCIDR: invalid CIDR "10.0.0.0/99"\n'


def test_kubeadms_kube_proxy_config_map_is_read_as_is(tmp_path: Path) -> None:
    config = tmp_path / "cm.yaml"
    conf = f"{KP}mode: nftables\nclusterCIDR: 10.0.0.0/8\nbindAddress: 0.0.0.0\nhostnameOverride: ''\n"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": conf, "kubeconfig.conf": "apiVersion: v1\nkind: Config\n"},
    }
    config.write_text(yaml.safe_dump(config_map))
    args = ["--node-name", "node1", "--node-ip", "192.168.0.2"]
    code, out, err = compile_("--config", str(config), *args, stdin=MANIFEST)
    assert (code, err) == (0, "")
    assert out == compile_("--backend", "nftables", *NODE_ARGS, stdin=MANIFEST)[1]
