"""`svc2rules proxy`: run the userspace proxy for the manifests (kube-proxy's userspace mode)."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from svc2rules import compile as compile_path
from svc2rules.apply.engine import ApplyInput, ApplyOptions, ApplyReport, apply_plan, cleanup_host
from svc2rules.backends import RenderOptions
from svc2rules.backends.userspace import BACKEND as USERSPACE
from svc2rules.backends.userspace.addressing import ANY_ADDRESS, Addressing
from svc2rules.backends.userspace.ports import DEFAULT_PORT_RANGE
from svc2rules.backends.userspace.render import render_userspace
from svc2rules.cli.apply import LockTimeoutOpt, StateDirOpt
from svc2rules.cli.common import (
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    MaxInputBytesOpt,
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
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError
from svc2rules.host.state import DEFAULT_STATE_DIR
from svc2rules.load import Source, read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES
from svc2rules.userspace.balancer import Balancing
from svc2rules.userspace.runner import Manifests, Runner, Runtime
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
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
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
            help="Load the matching REDIRECT rules at start and on every reload, as "
            "`svc2rules apply --backend userspace` does (same state dir and lock).",
        ),
    ] = False,
    keep_rules: Annotated[
        bool,
        typer.Option(
            "--keep-rules",
            help="With --apply-rules: leave the rules loaded when the proxy exits. The default "
            "removes them (as `svc2rules cleanup --backend userspace` does) before draining: once "
            "the proxy is gone they would send Service traffic to ports nobody listens on. Keep "
            "them across a restart, so that Service addresses never stop being redirected.",
        ),
    ] = False,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    lock_timeout: LockTimeoutOpt = 60.0,
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
        if keep_rules and not apply_rules:
            raise UsageError("--keep-rules keeps the rules --apply-rules loads: give both")
        paths = list(filename)
        options = RenderOptions(chain_prefix=chain_prefix, backend=addressing)

        def read_paths() -> list[Source]:
            # The files again on every call (SIGHUP); never stdin, which cannot be re-read.
            return read_sources(paths, recursive=recursive, stdin=io.BytesIO(), max_bytes=max_input_bytes)

        def load() -> Manifests:
            sources = read_paths()
            compiled = compile_path.compile_sources(sources, proxy_config)
            for warning in compiled.warnings:
                log.warning("%s", warning)
            return Manifests(tuple(sources), compiled.plan())

        if print_rules:
            compiled = compile_path.compile_sources(read_paths(), proxy_config)
            warn(compiled.warnings)
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
        # The proxy may not manage to drain if the engine waits long for the lock; its timeout
        # bounds that, as it does for apply. An input without Services is a proxy with
        # nothing to serve, not a failed `kubectl get`: its rules are loaded (and emptied) too.
        rules = _EngineRules(
            proxy_config,
            options,
            ApplyOptions(state_dir=state_dir, lock_timeout=lock_timeout, allow_empty=True),
        )
        runtime = Runtime(
            settings=ProxySettings(addressing, mode, udp_timeout, grace_period),
            load=load,
            install_rules=rules.install if apply_rules else None,
            remove_rules=rules.remove if apply_rules and not keep_rules else None,
        )
        asyncio.run(Runner(runtime).run())


@dataclass(frozen=True)
class _EngineRules:
    """`--apply-rules`: the userspace backend's applier, through the apply engine (its lock,
    state and generation marker), exactly as `svc2rules apply|cleanup --backend userspace`."""

    config: ProxyConfig
    options: RenderOptions[Addressing]
    apply_options: ApplyOptions

    def install(self, manifests: Manifests) -> None:
        # The engine compiles the same bytes again (through the state dir's compile cache).
        apply_input = ApplyInput(list(manifests.sources), self.config, USERSPACE.name, self.options)
        _log(apply_plan(apply_input, self.apply_options))

    def remove(self) -> None:
        _log(cleanup_host(USERSPACE.name, self.options, self.apply_options))


def _log(report: ApplyReport) -> None:
    for note in report.notes:
        if note.startswith("warning"):
            log.warning("%s", note.removeprefix("warning: "))
        else:
            log.info("%s", note)
    if report.written:
        log.info("rules: %s", report.summary)
