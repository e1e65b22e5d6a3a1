"""Shared pieces of the command-line interface: the app, options, error mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from svc2rules import __version__
from svc2rules.backends import available_backends
from svc2rules.config import ProxyConfig, build_config, config_mode
from svc2rules.errors import (
    ApplyError,
    BackendError,
    Diagnostic,
    InputError,
    LockBusyError,
    Svc2RulesError,
    UsageError,
)


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    # diff, as kubectl diff: 1 means "differences", and every error is 2 or more.
    DIFFERENT = 1
    INVALID = 2
    # Another run holds our lock or the xtables lock: retry later.
    BUSY = 3


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Compile Kubernetes Services and EndpointSlices into iptables, nftables or IPVS rules.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"svc2rules {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """svc2rules: a rule compiler for Kubernetes Services."""


# -- shared options ------------------------------------------------------------------------

FileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-f", "--filename", help="Manifest file, folder or '-' for stdin (repeatable). Default: stdin."
    ),
]
RecursiveOpt = Annotated[bool, typer.Option("-R", "--recursive", help="Read folders recursively.")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Output backend, or auto: ipvs if the kernel has IPVS, else iptables "
        "(default: the config file's mode, else iptables).",
    ),
]
NodeNameOpt = Annotated[str | None, typer.Option("--node-name", help="This node's name (endpoint locality).")]
NodeIPOpt = Annotated[list[str] | None, typer.Option("--node-ip", help="This node's IP (repeatable).")]
NodeZoneOpt = Annotated[
    str | None, typer.Option("--node-zone", help="This node's topology zone (zone hints).")
]
ClusterCIDROpt = Annotated[
    list[str] | None,
    typer.Option("--cluster-cidr", help="Pod CIDR of the cluster, one per family (repeatable)."),
]
MasqAllOpt = Annotated[
    bool | None,
    typer.Option("--masquerade-all/--no-masquerade-all", help="SNAT all traffic sent to a service."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="kube-proxy KubeProxyConfiguration file (flags override it).")
]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Map typed errors to one line each on stderr and an exit code; never a traceback."""
    try:
        yield
    except InputError as exc:
        for diagnostic in exc.diagnostics:
            err(str(diagnostic))
        raise typer.Exit(ExitCode.INVALID) from None
    except UsageError as exc:
        err(f"error: {exc}")
        raise typer.Exit(ExitCode.INVALID) from None
    except LockBusyError as exc:
        err(f"error: {exc}")
        raise typer.Exit(ExitCode.BUSY) from None
    except (BackendError, ApplyError, Svc2RulesError) as exc:
        err(f"error: {exc}")
        raise typer.Exit(ExitCode.FAILURE) from None
    except BrokenPipeError:
        # `svc2rules compile | head` is a normal pipeline, not a failure worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(ExitCode.FAILURE) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # pragma: no cover - a bug; still one line unless asked for more
        if os.environ.get("SVC2RULES_DEBUG"):
            raise
        err(f"internal error: {type(exc).__name__}: {exc} (set SVC2RULES_DEBUG=1 for a traceback)")
        raise typer.Exit(ExitCode.FAILURE) from None


def err(line: str) -> None:
    sys.stderr.write(line.replace("\n", "\\n") + "\n")


def warn(diagnostics: list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        err(f"warning: {diagnostic}")


def read_config_file(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml  # only a config file needs it (~25 ms to import)

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a KubeProxyConfiguration object")
    return data


def node_config(
    config_path: Path | None,
    *,
    node_name: str | None,
    node_ip: list[str] | None,
    node_zone: str | None,
    cluster_cidr: list[str] | None,
    masquerade_all: bool | None,
    extra: dict[str, Any] | None = None,
) -> tuple[ProxyConfig, str | None]:
    """Build the node/proxy config from the file and flags; also return the file's mode."""
    data = read_config_file(config_path)
    overrides: dict[str, Any] = {
        "node_name": node_name,
        "node_ips": tuple(node_ip or ()),
        "node_zone": node_zone,
        "cluster_cidrs": tuple(c for item in (cluster_cidr or ()) for c in item.split(",") if c.strip()),
        "masquerade_all": masquerade_all,
        **(extra or {}),
    }
    config = build_config(overrides, data, str(config_path) if config_path else "")
    return config, (config_mode(data) if data else None)


def choose_backend(requested: str | None, mode: str | None) -> str:
    name = requested or mode or "iptables"
    if name == "auto":
        # kube-proxy's seed behaviour: IPVS when the kernel has it, else iptables (said on stderr).
        from svc2rules.backends.ipvs.support import choose_auto

        name, why = choose_auto()
        err(why)
    if name not in available_backends():
        raise UsageError(f"unknown backend {name!r} (choose from: {', '.join(available_backends())})")
    return name
