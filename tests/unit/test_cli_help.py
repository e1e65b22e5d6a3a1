"""The command line as a person discovers it: -h, readable help with every choice listed, shell
completion, and kube-proxy's flag names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svc2rules.backends import available_backends
from svc2rules.backends.dns.options import FORMATS
from svc2rules.backends.nftables.options import LAYOUT_NAMES
from svc2rules.cli import COMMANDS, app
from svc2rules.cli.options import DNS_FORMAT_CHOICES, IPVS_SCHEDULER_CHOICES, NFT_LAYOUT_CHOICES
from svc2rules.model.service import IPVS_SCHEDULERS
from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml

runner = CliRunner()
CLI = str(Path(sys.executable).with_name("svc2rules"))


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "-h"], terminal_width=200, prog_name="svc2rules")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_h_and_says_what_it_does(command: str) -> None:
    text = help_of(command)
    assert text.startswith(f"Usage: svc2rules {command} [OPTIONS]")
    assert text == runner.invoke(app, [command, "--help"], terminal_width=200, prog_name="svc2rules").stdout
    summary = text.split("\n\n")[1].strip()
    assert len(summary) > 30, summary


# explain's and proxy's own options (--src, --port, --bind, ...) still show typer's <str>.
@pytest.mark.parametrize("command", ["apply", "cleanup", "compile", "diff"])
def test_help_has_readable_placeholders(command: str) -> None:
    # typer's defaults would print <list[str]>, <str> and <path>.
    assert not re.search(r"<[a-z\[\]]+>", help_of(command))


@pytest.mark.parametrize(
    ("command", "option", "names"),
    [
        ("compile", "--backend", ("auto", *available_backends())),
        ("apply", "--backend", ("auto", *available_backends())),
        ("compile", "--comments", ("auto", "always", "never")),
        ("compile", "--nft-layout", LAYOUT_NAMES),
        ("compile", "--ipvs-scheduler", IPVS_SCHEDULERS),
        ("compile", "--dns-format", FORMATS),
        ("compile", "--output", ("rules", "json", "yaml", "ir")),
        ("cleanup", "--backend", ("auto", *available_backends())),
    ],
)
def test_every_enumerated_option_lists_its_choices(command: str, option: str, names: tuple[str, ...]) -> None:
    listed = f"[{'|'.join(names)}]"
    line = next(line for line in help_of(command).splitlines() if option in line)
    assert listed in line, line


def test_the_help_choices_are_the_backends_own() -> None:
    assert IPVS_SCHEDULER_CHOICES == IPVS_SCHEDULERS
    assert NFT_LAYOUT_CHOICES == LAYOUT_NAMES
    assert DNS_FORMAT_CHOICES == FORMATS


def test_the_root_takes_h_and_offers_completion() -> None:
    text = help_of()
    assert "--install-completion" in text and "--show-completion" in text
    for command in COMMANDS:
        assert f"  {command} " in text


@pytest.mark.parametrize(
    ("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")]
)
def test_completion_scripts_are_produced_for_bash_zsh_and_fish(shell: str, marker: str) -> None:
    env = {**os.environ, "_SVC2RULES_COMPLETE": f"source_{shell}"}
    proc = subprocess.run([CLI], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and "_SVC2RULES_COMPLETE" in proc.stdout, proc.stdout


def test_show_completion_prints_the_script_of_the_shell_it_runs_in() -> None:
    proc = subprocess.run(
        ["bash", "-c", f"{CLI} --show-completion; exit $?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_svc2rules_completion" in proc.stdout and "complete -o" in proc.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("svc2rules comp", ["compile"]),
        ("svc2rules apply --backend nf", ["nftables"]),
        ("svc2rules compile --nft-layout ", ["grouped", "kube-proxy"]),
    ],
)
def test_completion_completes_commands_and_choices(words: str, expected: list[str]) -> None:
    env = {
        **os.environ,
        "_SVC2RULES_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    proc = subprocess.run([CLI], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.split() == expected, proc.stderr


# -- kube-proxy's flag names ------------------------------------------------------------------

LOCAL = to_yaml(
    service(
        "web",
        type="NodePort",
        externalTrafficPolicy="Local",
        ports=[{"name": "p80", "port": 80, "nodePort": 30080}],
    ),
    endpoint_slice("web", endpoints=[endpoint("10.180.0.1", node="node1")]),
)


def compile_out(*args: str) -> str:
    result = runner.invoke(app, ["compile", *args], input=LOCAL)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_kube_proxys_flag_names_are_aliases() -> None:
    node = ["--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
    assert compile_out("--hostname-override", "Node1", *node) == compile_out("--node-name", "node1", *node)
    assert compile_out("--proxy-mode", "nftables", *NODE_ARGS) == compile_out(
        "--backend", "nftables", *NODE_ARGS
    )
    restricted = compile_out("--nodeport-addresses", "192.168.0.0/24", *NODE_ARGS)
    assert restricted != compile_out(*NODE_ARGS)
    assert "-d 192.168.0.2/32" in restricted or "192.168.0.2" in restricted
