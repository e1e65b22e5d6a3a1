"""Shared pieces of the command-line interface: the app, options, error mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from svc2rules import __version__
from svc2rules.backends import available_backends
from svc2rules.config import ConfigFile, ProxyConfig, parse_config_text, read_config, unknown_fields
from svc2rules.errors import (
    ApplyError,
    BackendError,
    Diagnostic,
    InputError,
    LockBusyError,
    Svc2RulesError,
    UsageError,
    printable,
    quote_value,
)
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    # diff, as kubectl diff: 1 means "differences", and every error is 2 or more.
    DIFFERENT = 1
    INVALID = 2
    # Another run holds our lock or the xtables lock: retry later.
    BUSY = 3


app = typer.Typer(
    # --install-completion / --show-completion [bash|zsh|fish|powershell].
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Compile Kubernetes Services and EndpointSlices into iptables, nftables or IPVS rules, "
    "and load them onto a node. Every command takes -h.",
)


def choices(names: Sequence[str]) -> str:
    """A metavar listing an option's choices, as click prints a Choice."""
    return "[" + "|".join(names) + "]"


def completes(names: Sequence[str]) -> Callable[[str], list[str]]:
    """Shell completion of an option's values from its choices."""

    def complete(incomplete: str) -> list[str]:
        return [name for name in names if name.startswith(incomplete)]

    return complete


# `auto` picks ipvs or iptables from what the kernel has.
BACKEND_CHOICES = ("auto", *available_backends())


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
        "-f",
        "--filename",
        metavar="PATH",
        help="Manifest file, folder or '-' for stdin (repeatable). Default: stdin.",
    ),
]
RecursiveOpt = Annotated[bool, typer.Option("-R", "--recursive", help="Read folders recursively.")]
MaxInputBytesOpt = Annotated[
    int,
    typer.Option(
        "--max-input-bytes",
        min=0,
        help="Refuse input larger than this many bytes, all sources together, before parsing it "
        f"(default {DEFAULT_MAX_INPUT_BYTES // 2**20} MiB: about 4 GiB of memory to compile).",
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "--proxy-mode",
        metavar=choices(BACKEND_CHOICES),
        autocompletion=completes(BACKEND_CHOICES),
        help="Output backend (--proxy-mode is kube-proxy's name for it); auto: ipvs if the kernel "
        "has IPVS, else iptables. Default: the config file's mode, else iptables.",
    ),
]
NodeNameOpt = Annotated[
    str | None,
    typer.Option(
        "--node-name",
        "--hostname-override",
        metavar="NAME",
        help="This node's name: which endpoints are local (lower-cased, as kube-proxy does). "
        "Without it (or the config's hostnameOverride) no endpoint is local.",
    ),
]
HostNodeNameOpt = Annotated[
    str | None,
    typer.Option(
        "--node-name",
        "--hostname-override",
        metavar="NAME",
        help="This node's name: which endpoints are local (lower-cased, as kube-proxy does). "
        "Default: the config's hostnameOverride, else this host's name.",
    ),
]
NodeIPOpt = Annotated[
    list[str] | None,
    typer.Option("--node-ip", metavar="IP", help="This node's IP, one per family (repeatable)."),
]
HostNodeIPOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--node-ip",
        metavar="IP",
        help="This node's IP (repeatable). Default: the config's bindAddress, else the address "
        "of each family's default-route interface.",
    ),
]
NodeZoneOpt = Annotated[
    str | None, typer.Option("--node-zone", metavar="ZONE", help="This node's topology zone (zone hints).")
]
ClusterCIDROpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cluster-cidr",
        metavar="CIDR",
        help="Pod CIDR of the cluster, one per family (repeatable or comma-separated): tells pod "
        "traffic from outside traffic.",
    ),
]
NodePortAddressesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--nodeport-addresses",
        metavar="CIDR|primary",
        help="Accept NodePorts only on node IPs in these CIDRs, or on the primary node IP "
        "(repeatable or comma-separated; kube-proxy's flag). Default: every local address.",
    ),
]
ServiceCIDROpt = Annotated[
    list[str] | None,
    typer.Option(
        "--service-cidr",
        metavar="CIDR",
        help="The cluster's service CIDR, one per family (repeatable or comma-separated; "
        "kube-apiserver's --service-cluster-ip-range). With it (or ServiceCIDR objects in the input) "
        "the nftables backend refuses undefined ports of a ClusterIP and drops unallocated service IPs.",
    ),
]
TcpBeLiberalOpt = Annotated[
    bool | None,
    typer.Option(
        "--conntrack-tcp-be-liberal/--no-conntrack-tcp-be-liberal",
        help="Set net.netfilter.nf_conntrack_tcp_be_liberal=1 (conntrack.tcpBeLiberal). Default: on "
        "for the nftables backend (kube-proxy's nftables mode relies on it), off otherwise.",
        show_default=False,
    ),
]
MasqAllOpt = Annotated[
    bool | None,
    typer.Option("--masquerade-all/--no-masquerade-all", help="SNAT all traffic sent to a service."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="kube-proxy KubeProxyConfiguration file, or kubeadm's kube-proxy ConfigMap "
        "(kubectl -n kube-system get cm kube-proxy -o yaml); flags override it.",
    ),
]
StrictConfigOpt = Annotated[
    bool,
    typer.Option(
        "--strict-config",
        help="Refuse a config file with fields KubeProxyConfiguration does not have (else a warning).",
    ),
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
    # One line a terminal prints as it is: control characters escaped, a huge value shortened.
    sys.stderr.write(printable(line) + "\n")


def warn(diagnostics: list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        err(f"warning: {diagnostic}")


def read_config_file(path: Path | None) -> ConfigFile | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from None
    return parse_config_text(text, str(path))


def node_config(
    config_path: Path | None,
    *,
    node_name: str | None,
    node_ip: list[str] | None,
    node_zone: str | None,
    cluster_cidr: list[str] | None,
    masquerade_all: bool | None,
    node_port_addresses: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    strict: bool = False,
    warn_missing: bool = True,
    notes: list[str] | None = None,
) -> tuple[ProxyConfig, str | None]:
    """Build the node/proxy config from the file and flags; also return the file's mode.

    Warnings (unknown config fields, CIDRs with host bits, and with `warn_missing` the node
    facts the rules lack) go to `notes` when given, else straight to stderr."""
    file = read_config_file(config_path)
    warnings: list[str] = []
    if file is not None:
        unknown = [file.where(field) for field in unknown_fields(file.data)]
        if strict and unknown:
            for line in unknown[:-1]:
                err(f"error: {line}")
            raise UsageError(f"{unknown[-1]} (--strict-config)")
        warnings += [f"{line}; ignored (--strict-config refuses it)" for line in unknown]
        _check_mode(file)
    overrides: dict[str, Any] = {
        "node_name": node_name,
        "node_ips": tuple(node_ip or ()),
        "node_zone": node_zone,
        "cluster_cidrs": comma_list(cluster_cidr),
        "masquerade_all": masquerade_all,
        "node_port_addresses": comma_list(node_port_addresses),
        **(extra or {}),
    }
    built = read_config(overrides, file)
    warnings += built.warnings
    if warn_missing:
        warnings += missing_node_facts(built.config)
    if notes is None:
        for line in warnings:
            err(f"warning: {line}")
    else:
        notes += [f"warning: {line}" for line in warnings]
    return built.config, (file.mode if file is not None else None)


def comma_list(items: list[str] | None) -> tuple[str, ...]:
    """A repeatable flag that also takes comma-separated values, as kube-proxy's do."""
    return tuple(c for item in (items or ()) for c in item.split(",") if c.strip())


def _check_mode(file: ConfigFile) -> None:
    if file.mode is not None and file.mode not in BACKEND_CHOICES:
        raise UsageError(
            f"{file.where('mode')}: Unsupported value: {quote_value(file.mode)}: supported values: "
            + ", ".join(BACKEND_CHOICES)
        )


def missing_node_facts(config: ProxyConfig) -> list[str]:
    """What the rules lose for each node fact nobody gave, as kube-proxy warns at start."""
    missing = []
    if config.node_name is None:
        missing.append(
            "no node name (--node-name or the config's hostnameOverride): no endpoint is local to "
            "this node, so Services with externalTrafficPolicy or internalTrafficPolicy Local "
            "drop their traffic here, and topology hints for this node are not followed"
        )
    if not config.node_ips:
        missing.append(
            "can't determine this node's IP (--node-ip or the config's bindAddress): nodePortAddresses "
            "'primary' (the nftables backend's default) means every local address, as in kube-proxy "
            "without a node IP, IPVS NodePorts get no virtual server, and "
            "loadBalancerSourceRanges never admit the node's own traffic"
        )
    if not config.cluster_cidrs:
        missing.append(
            "no cluster CIDR specified (--cluster-cidr or the config's clusterCIDR): pod traffic "
            "cannot be told from outside traffic, so traffic from outside the cluster to ClusterIPs "
            "is not masqueraded and pods reaching an externalTrafficPolicy Local Service only get "
            "this node's endpoints"
        )
    return missing


def choose_backend(requested: str | None, mode: str | None) -> str:
    name = requested or mode or "iptables"
    if name == "auto":
        # kube-proxy's seed behaviour: IPVS when the kernel has it, else iptables (said on stderr).
        from svc2rules.backends.ipvs.support import choose_auto

        name, why = choose_auto()
        err(why)
    if name not in available_backends():
        where = "--backend: " if requested else ""
        raise UsageError(f"{where}unknown backend {name!r} (choose from: {', '.join(available_backends())})")
    return name
