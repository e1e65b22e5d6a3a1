"""`svc2rules run`: follow the input and keep this node's rules up to date (the long-running
form of `apply`), serve the load balancers' health checks, /healthz, /livez and /metrics.

Exit codes: 0 stopped by SIGTERM/SIGINT (the rules stay), 2 invalid usage, 1 a fatal error
(a port that cannot be listened on, an events path that cannot be opened).
"""

from __future__ import annotations

import contextlib
import gc
import re
from pathlib import Path
from typing import Annotated

import typer

from svc2rules.backends import DEFAULT_CHAIN_PREFIX, DEFAULT_TABLE, Comments
from svc2rules.cli.apply import LockTimeoutOpt, StateDirOpt
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    HostNodeIPOpt,
    HostNodeNameOpt,
    MasqAllOpt,
    MaxInputBytesOpt,
    NodePortAddressesOpt,
    NodeZoneOpt,
    RecursiveOpt,
    ServiceCIDROpt,
    StrictConfigOpt,
    TcpBeLiberalOpt,
    app,
    cli_errors,
    err,
)
from svc2rules.cli.options import (
    ChainPrefixOpt,
    ClusterDomainOpt,
    CommentsOpt,
    DnsFormatOpt,
    DnsServerIPOpt,
    ForceOpt,
    ForeignNames,
    IpvsSchedulerOpt,
    JumpsOpt,
    NftLayoutOpt,
    NodeFacts,
    NodeFlags,
    RenderFlags,
    TableOpt,
    build_options,
)
from svc2rules.errors import UsageError
from svc2rules.host.state import DEFAULT_STATE_DIR
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, flag: str) -> float:
    """Seconds from a Go duration (`1s`, `500ms`, `1h30m`, as kube-proxy's flags take) or a
    plain number of seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise UsageError(f"{flag}: invalid duration {value!r} (e.g. 1s, 500ms, 1h)") from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds < 0:
        raise UsageError(f"{flag}: must not be negative")
    return seconds


def _log(line: str) -> None:
    # A log nobody reads any more (a closed pipe) must not stop the agent.
    with contextlib.suppress(OSError, ValueError):
        err(line)


def _bind(address: str, flag: str) -> tuple[str, int] | None:
    """HOST:PORT; an empty value (or port 0 as kube-proxy takes it) turns the server off."""
    from svc2rules.agent.http import split_address

    if not address:
        return None
    host, port = split_address(address, flag)
    return None if port == 0 else (host, port)


@app.command("run")
def run_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            metavar="PATH|-",
            help="A stream of watch events as `kubectl get services|endpointslices|endpoints -A --watch "
            "--output-watch-events -o json` prints it (a FIFO is opened again when its writer goes; "
            "repeatable: one kubectl per resource type).",
        ),
    ] = None,
    backend: BackendOpt = None,
    node_name: HostNodeNameOpt = None,
    node_ip: HostNodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    nodeport_addresses: NodePortAddressesOpt = None,
    service_cidr: ServiceCIDROpt = None,
    conntrack_tcp_be_liberal: TcpBeLiberalOpt = None,
    config: ConfigOpt = None,
    strict_config: StrictConfigOpt = False,
    comments: CommentsOpt = Comments.AUTO,
    chain_prefix: ChainPrefixOpt = DEFAULT_CHAIN_PREFIX,
    table: TableOpt = DEFAULT_TABLE,
    jumps: JumpsOpt = True,
    ipvs_scheduler: IpvsSchedulerOpt = None,
    nft_layout: NftLayoutOpt = None,
    cluster_domain: ClusterDomainOpt = None,
    dns_format: DnsFormatOpt = None,
    dns_server_ip: DnsServerIPOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    lock_timeout: LockTimeoutOpt = 60.0,
    sysctl: Annotated[
        bool,
        typer.Option("--sysctl/--no-sysctl", help="Set the sysctls the rules need (else refuse when unset)."),
    ] = True,
    min_sync_period: Annotated[
        str,
        typer.Option(
            "--min-sync-period",
            metavar="DURATION",
            help="Changes arriving within this of the last sync join the next one (kube-proxy's "
            "minSyncPeriod; 0: sync each change at once).",
        ),
    ] = "1s",
    sync_period: Annotated[
        str,
        typer.Option(
            "--sync-period",
            metavar="DURATION",
            help="Read our rules back from the kernel this often and repair what changed.",
        ),
    ] = "1h",
    health_timeout: Annotated[
        str,
        typer.Option(
            "--health-timeout",
            metavar="DURATION",
            help="/healthz and /livez answer 503 once a change has waited this long for a successful "
            "sync (kube-proxy: twice its 30 s sync period).",
        ),
    ] = "60s",
    healthz_bind_address: Annotated[
        str,
        typer.Option(
            "--healthz-bind-address", metavar="HOST:PORT", help="/healthz and /livez ('' turns it off)."
        ),
    ] = "0.0.0.0:10256",
    metrics_bind_address: Annotated[
        str,
        typer.Option("--metrics-bind-address", metavar="HOST:PORT", help="/metrics ('' turns it off)."),
    ] = "127.0.0.1:10249",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="An invalid object stops every change from being applied until it is fixed (compile's "
            "all-or-nothing); by default it is left out with a warning and the rest is applied.",
        ),
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Keep this node's rules in step with watched manifests or watch events; serve health checks and metrics."""
    from svc2rules.agent.loop import Agent, AgentOptions, Setup
    from svc2rules.apply.engine import ApplyOptions

    with cli_errors():

        def setup() -> Setup:
            chosen = build_options(
                NodeFlags(
                    config,
                    node_name,
                    node_ip,
                    node_zone,
                    cluster_cidr,
                    masquerade_all,
                    node_port_addresses=nodeport_addresses,
                    service_cidr=service_cidr,
                    conntrack_tcp_be_liberal=conntrack_tcp_be_liberal,
                    strict_config=strict_config,
                ),
                RenderFlags(
                    comments,
                    chain_prefix,
                    table,
                    jumps,
                    nft_layout,
                    ipvs_scheduler,
                    cluster_domain,
                    dns_format,
                    dns_server_ip,
                ),
                backend,
                facts=NodeFacts.HOST,
                foreign=ForeignNames.ALLOW if force else ForeignNames.REFUSE,
            )
            chosen.warn_missing_facts()
            return Setup(chosen.config, chosen.backend, chosen.render)

        if not filename and not events:
            raise UsageError("give what to follow: -f FILE|FOLDER (watched) and/or --events PATH|-")
        options = AgentOptions(
            paths=list(filename or []),
            recursive=recursive,
            max_bytes=max_input_bytes,
            events=list(events or []),
            min_sync_period=parse_duration(min_sync_period, "--min-sync-period"),
            sync_period=parse_duration(sync_period, "--sync-period") or 3600.0,
            health_timeout=parse_duration(health_timeout, "--health-timeout"),
            strict=strict,
            healthz=_bind(healthz_bind_address, "--healthz-bind-address"),
            metrics=_bind(metrics_bind_address, "--metrics-bind-address"),
            apply=ApplyOptions(state_dir=Path(state_dir), sysctl=sysctl, lock_timeout=lock_timeout),
        )
        for path in options.paths:
            if path != "-" and not Path(path).exists():
                raise UsageError(f"-f {path}: no such file or directory")
        agent = Agent(setup(), options, log=_log, reconfigure=setup)
        # The CLI turns the cyclic collector off for one-shot commands; a long-running one needs
        # it (the agent freezes what it keeps for good, so collections stay cheap).
        gc.enable()
        # Imported here: every other command starts without loading the event loop.
        import asyncio

        asyncio.run(agent.run())
