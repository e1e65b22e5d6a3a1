"""`svc2rules apply`, `diff` and `cleanup`: put the compiled rules on this host, safely.

Exit codes (apply, cleanup): 0 ok, 2 invalid input or usage, 1 failure (the host keeps
its previous rules), 3 busy (another run holds our lock or the xtables lock: retry).
`diff` follows kubectl diff: 0 no differences, 1 differences, 2 or more an error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from svc2rules.apply.engine import ApplyInput, ApplyOptions, ApplyReport, apply_plan, cleanup_host, diff_plan
from svc2rules.backends import DEFAULT_CHAIN_PREFIX, DEFAULT_TABLE, Comments
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    ExitCode,
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
    warn,
)
from svc2rules.cli.options import (
    ChainPrefixOpt,
    ClusterDomainOpt,
    CommandOptions,
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
from svc2rules.errors import Diagnostic
from svc2rules.host.state import DEFAULT_STATE_DIR
from svc2rules.load import read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

StateDirOpt = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where the last applied state and the lock live.",
        envvar="SVC2RULES_STATE_DIR",
    ),
]
LockTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--lock-timeout", metavar="SECONDS", help="Seconds to wait for another run to finish (then exit 3)."
    ),
]


def _render_flags(
    comments: Comments,
    chain_prefix: str,
    table: str,
    jumps: bool,
    nft_layout: str | None,
    ipvs_scheduler: str | None,
    cluster_domain: str | None,
    dns_format: str | None,
    dns_server_ip: str | None,
) -> RenderFlags:
    return RenderFlags(
        comments,
        chain_prefix,
        table,
        jumps,
        nft_layout,
        ipvs_scheduler,
        cluster_domain,
        dns_format,
        dns_server_ip,
    )


def _input(
    filename: list[str] | None,
    recursive: bool,
    max_input_bytes: int,
    chosen: CommandOptions,
    run: OneShot | None = None,
) -> ApplyInput:
    sources = read_sources(
        filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
    )
    if run is None:
        return ApplyInput(sources, chosen.config, chosen.backend, chosen.render, warn)
    return ApplyInput(
        sources,
        chosen.config,
        chosen.backend,
        chosen.render,
        warn,
        skip_invalid=run.skip_invalid,
        on_skipped=run.say_skipped,
    )


@dataclass
class OneShot:
    """What `apply --skip-invalid` says of the objects it left out, and what `--textfile`
    writes of the run (its failure too)."""

    skip_invalid: bool
    textfile: Path | None
    dry_run: bool
    backend: str = "iptables"
    report: ApplyReport | None = None
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    def say_skipped(self, problems: list[Diagnostic]) -> None:
        from svc2rules.agent.invalid import left_out

        lines = left_out(problems)
        for line in lines:
            err(f"warning: {line}")
        self.skipped += len(lines)

    @contextmanager
    def recorded(self) -> Iterator[OneShot]:
        failure: str | None = "failed"
        try:
            yield self
            failure = None
        except typer.Exit as exc:
            failure = {int(ExitCode.INVALID): "invalid", int(ExitCode.BUSY): "busy"}.get(
                exc.exit_code, "failed"
            )
            raise
        finally:
            if self.textfile is not None and not self.dry_run:
                self._write(self.textfile, failure)

    def _write(self, folder: Path, failure: str | None) -> None:
        from svc2rules.agent.metrics import one_shot

        report = self.report
        metrics = one_shot(
            self.backend,
            elapsed=time.monotonic() - self.started,
            timings=report.timings if report is not None else {},
            written=report is not None and report.written,
            full=report is not None and report.kind == "full",
            skipped=self.skipped,
            failure=failure,
        )
        try:
            metrics.write_textfile(folder)
        except OSError as exc:
            err(f"warning: --textfile {folder}: cannot write: {exc.strerror or exc}")


def _print_notes(report: ApplyReport, *, timings: bool = False) -> None:
    for note in report.notes:
        err(note)
    if timings:
        err("timings: " + " ".join(f"{k}={v:.3f}s" for k, v in report.timings.items()))


@app.command("apply")
def apply_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be loaded; change nothing.")
    ] = False,
    sysctl: Annotated[
        bool,
        typer.Option("--sysctl/--no-sysctl", help="Set the sysctls the rules need (else refuse when unset)."),
    ] = True,
    lock_timeout: LockTimeoutOpt = 60.0,
    timings: Annotated[bool, typer.Option("--timings", hidden=True)] = False,
    resync: Annotated[
        bool,
        typer.Option(
            "--resync", help="Do not trust the state file: read our rules back and reload them all."
        ),
    ] = False,
    sync_period: Annotated[
        str,
        typer.Option(
            "--sync-period",
            metavar="DURATION",
            help="Read our rules back and reload them (repairing changes made inside them) when the "
            "last such full check is older than this (kube-proxy's full sync: 1h; 0: every run).",
        ),
    ] = "1h",
    conntrack_cleanup: Annotated[
        bool, typer.Option("--conntrack-cleanup/--no-conntrack-cleanup", hidden=True)
    ] = True,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Apply an input without any Service (removing every Service's rules); refused otherwise.",
        ),
    ] = False,
    force: ForceOpt = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Leave invalid objects out (one warning each) and apply the rest, instead of refusing the input.",
        ),
    ] = False,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            metavar="DIR",
            help="Also write this run's metrics to DIR/svc2rules.prom (node_exporter's textfile collector).",
        ),
    ] = None,
) -> None:
    """Load the compiled rules onto this host: validated, one transaction, only what changed."""
    with OneShot(skip_invalid, textfile, dry_run).recorded() as run, cli_errors():
        from svc2rules.cli.run import parse_duration

        full_check_period = parse_duration(sync_period, "--sync-period")
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
            _render_flags(
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
        run.backend = chosen.backend
        report = run.report = apply_plan(
            _input(filename, recursive, max_input_bytes, chosen, run),
            ApplyOptions(
                state_dir=state_dir,
                dry_run=dry_run,
                sysctl=sysctl,
                lock_timeout=lock_timeout,
                conntrack=conntrack_cleanup,
                resync=resync,
                allow_empty=allow_empty,
                sync_period=full_check_period,
            ),
        )
        _print_notes(report, timings=timings)
        if dry_run:
            if report.kind == "none":
                err("dry run: no changes; nothing would be written")
            elif report.rules is not None:
                # A full load: the rules exactly as `compile` shows them with the same flags.
                sys.stdout.write(report.rules)
                sys.stdout.flush()
                err(
                    f"dry run: would load these rules ({report.summary}), with svc2rules' generation "
                    "marker; nothing was changed"
                )
            else:
                sys.stdout.write(report.payload)
                sys.stdout.flush()
                err(f"dry run: would load ({report.summary}); nothing was changed")
        elif report.kind == "none":
            err("no changes: the host already has this ruleset; nothing written to the kernel")
        else:
            err(f"applied ({report.summary})")


@app.command("diff")
def diff_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
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
) -> None:
    """Show our owned objects, live vs compiled (exit 0 none, 1 differences, >1 error)."""
    try:
        with cli_errors():
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
                _render_flags(
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
                foreign=ForeignNames.ALLOW,
            )
            chosen.warn_missing_facts()
            text, changed = diff_plan(
                _input(filename, recursive, max_input_bytes, chosen),
                ApplyOptions(state_dir=state_dir, lock_timeout=lock_timeout),
            )
            sys.stdout.write(text)
            sys.stdout.flush()
    except typer.Exit as exc:
        # kubectl diff: 1 means "differences", so every error is > 1.
        raise typer.Exit(ExitCode.INVALID if exc.exit_code == ExitCode.FAILURE else exc.exit_code) from None
    raise typer.Exit(ExitCode.DIFFERENT if changed else ExitCode.OK)


@app.command("cleanup")
def cleanup_command(
    backend: BackendOpt = None,
    config: ConfigOpt = None,
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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be removed; change nothing.")
    ] = False,
    lock_timeout: LockTimeoutOpt = 60.0,
    strict_config: StrictConfigOpt = False,
    force: ForceOpt = False,
) -> None:
    """Remove everything svc2rules owns on this host (our chains and jumps, or our table)."""
    with cli_errors():
        chosen = build_options(
            NodeFlags(config, strict_config=strict_config),
            _render_flags(
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
            facts=NodeFacts.UNUSED,
            foreign=ForeignNames.ALLOW if force else ForeignNames.REFUSE,
        )
        report = cleanup_host(
            chosen.backend,
            chosen.render,
            ApplyOptions(state_dir=state_dir, dry_run=dry_run, lock_timeout=lock_timeout),
        )
        _print_notes(report)
        if dry_run:
            sys.stdout.write(report.payload)
            err(f"dry run: would remove ({report.summary}); nothing was changed")
        elif report.kind == "none":
            err("cleanup: nothing of ours on this host")
        else:
            err(f"cleanup: {report.summary}")
