"""`svc2rules proxy`: run the userspace proxy for the manifests (kube-proxy's userspace mode)."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
from typing import Annotated

import typer

from svc2rules.backends import RenderOptions
from svc2rules.backends.userspace.render import render_userspace
from svc2rules.cli.common import (
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodeZoneOpt,
    RecursiveOpt,
    app,
    cli_errors,
    err,
    node_config,
    warn,
)
from svc2rules.compile import Compilation, compile_sources
from svc2rules.errors import UsageError
from svc2rules.ir import Plan
from svc2rules.load import read_sources
from svc2rules.userspace.addressing import ANY_ADDRESS, Addressing
from svc2rules.userspace.balancer import Balancing
from svc2rules.userspace.install import install_rules
from svc2rules.userspace.ports import DEFAULT_PORT_RANGE
from svc2rules.userspace.runner import Runner, Runtime
from svc2rules.userspace.server import ProxySettings
from svc2rules.userspace.udp import DEFAULT_IDLE_TIMEOUT

log = logging.getLogger("svc2rules.proxy")
LOG_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


@app.command("proxy")
def proxy_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    config: ConfigOpt = None,
    bind: Annotated[
        str, typer.Option("--bind", help="Address the proxy listens on (default: every address).")
    ] = ANY_ADDRESS,
    port_range: Annotated[
        str, typer.Option("--port-range", help="Node ports the proxy may listen on, A-B (inclusive).")
    ] = DEFAULT_PORT_RANGE,
    balancing: Annotated[
        str, typer.Option("--balancing", help="Endpoint choice: round-robin or random.")
    ] = Balancing.ROUND_ROBIN.value,
    udp_timeout: Annotated[
        float, typer.Option("--udp-timeout", help="Seconds an idle UDP association is kept.")
    ] = DEFAULT_IDLE_TIMEOUT,
    grace_period: Annotated[
        float,
        typer.Option("--grace-period", help="Seconds open connections may take to finish after SIGTERM."),
    ] = 30.0,
    apply_rules: Annotated[
        bool,
        typer.Option(
            "--apply-rules/--no-apply-rules",
            help="Load the matching REDIRECT rules with iptables at start and on every reload.",
        ),
    ] = False,
    print_rules: Annotated[
        bool, typer.Option("--print-rules", help="Print the matching rules (iptables-restore) and exit.")
    ] = False,
    chain_prefix: Annotated[
        str, typer.Option("--chain-prefix", help="Prefix of our iptables chains.")
    ] = "SVC2R",
    log_level: Annotated[
        str, typer.Option("--log-level", help="error, warning, info or debug (on stderr).")
    ] = "info",
) -> None:
    """Relay Service traffic to endpoints from userspace; SIGHUP re-reads the manifests,
    SIGTERM drains and exits."""
    with cli_errors():
        if not filename or "-" in filename:
            raise UsageError("proxy needs -f FILE or folder (stdin cannot be re-read on SIGHUP)")
        if log_level not in LOG_LEVELS:
            raise UsageError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        try:
            mode = Balancing(balancing)
        except ValueError:
            raise UsageError(f"--balancing must be round-robin or random, got {balancing!r}") from None
        if udp_timeout <= 0 or grace_period < 0:
            raise UsageError("--udp-timeout must be > 0 and --grace-period >= 0")
        addressing = Addressing.create(port_range, bind)
        proxy_config, _mode = node_config(
            config,
            node_name=node_name,
            node_ip=node_ip,
            node_zone=node_zone,
            cluster_cidr=cluster_cidr,
            masquerade_all=None,
        )
        paths = list(filename)

        def compile_paths() -> Compilation:
            # The files again on every call (SIGHUP); never stdin, which cannot be re-read.
            sources = read_sources(paths, recursive=recursive, stdin=io.BytesIO())
            return compile_sources(sources, proxy_config)

        def load_plan() -> Plan:
            compiled = compile_paths()
            for warning in compiled.warnings:
                log.warning("%s", warning)
            return compiled.plan()

        if print_rules:
            compiled = compile_paths()
            warn(compiled.warnings)
            options = RenderOptions(chain_prefix=chain_prefix, backend=addressing)
            artifact = render_userspace(compiled.plan(), options)
            for warning in artifact.warnings:
                err(f"warning: {warning}")
            sys.stdout.write(artifact.text)
            sys.stdout.flush()
            return

        # A compile run keeps the cyclic GC off for speed; a long-running proxy needs it.
        gc.enable()
        logging.basicConfig(
            stream=sys.stderr,
            level=LOG_LEVELS[log_level],
            format="svc2rules proxy: %(levelname)s: %(message)s",
        )
        runtime = Runtime(
            settings=ProxySettings(addressing, mode, udp_timeout, grace_period),
            load_plan=load_plan,
            install_rules=(lambda plan: install_rules(plan, addressing, chain_prefix))
            if apply_rules
            else None,
        )
        asyncio.run(Runner(runtime).run())
