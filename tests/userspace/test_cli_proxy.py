"""`svc2rules proxy`: its options and `--print-rules` (its life as a process: test_proxy_process.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml

runner = CliRunner()
MANIFEST = to_yaml(service(), endpoint_slice())


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(MANIFEST)
    return path


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-f", "-"],
        ["--port-range", "9-1"],
        ["--bind", "not-an-ip"],
        ["--balancing", "least-conn"],
        ["--log-level", "loud"],
        ["--udp-timeout", "0"],
        ["--keep-rules"],  # keeps what --apply-rules loads: alone it means nothing
    ],
)
def test_bad_options_exit_2_with_one_line(manifest: Path, args: list[str]) -> None:
    files = [] if args in ([], ["-f", "-"]) else ["-f", str(manifest)]
    result = runner.invoke(app, ["proxy", *files, *args, *NODE_ARGS], input=MANIFEST)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_print_rules_is_what_compile_renders_for_the_same_settings(manifest: Path) -> None:
    printed = runner.invoke(app, ["proxy", "-f", str(manifest), "--print-rules", *NODE_ARGS])
    compiled = runner.invoke(app, ["compile", "--backend", "userspace", "-f", str(manifest), *NODE_ARGS])
    assert printed.exit_code == compiled.exit_code == 0
    assert printed.stdout == compiled.stdout
    narrow = runner.invoke(
        app, ["proxy", "-f", str(manifest), "--print-rules", "--port-range", "40000-40010", *NODE_ARGS]
    )
    port = int(narrow.stdout.split("--to-ports ")[1].split()[0])
    assert 40000 <= port <= 40010


def test_invalid_manifests_exit_2_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(to_yaml(service(ports=[{"name": "p", "port": 0}])))
    result = runner.invoke(app, ["proxy", "-f", str(bad), "--print-rules", *NODE_ARGS])
    assert result.exit_code == 2 and "port" in result.stderr
