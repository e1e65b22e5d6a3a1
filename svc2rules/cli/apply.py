"""`svc2rules apply`, `diff` and `cleanup`: put the compiled rules on this host, safely.

Exit codes (apply, cleanup): 0 ok, 2 invalid input or usage, 1 failure (the host keeps
its previous rules), 3 lock busy (another run holds our lock or the xtables lock: retry).
`diff` follows kubectl diff: 0 no differences, 1 differences, 2 or more an error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from svc2rules.api import plan_from_paths
from svc2rules.apply.engine import (
    ApplyInput,
    ApplyOptions,
    apply_plan,
    cleanup_host,
    diff_plan,
    input_digest,
    print_report,
)
from svc2rules.apply.state import DEFAULT_STATE_DIR
from svc2rules.backends import RenderOptions
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    ExitCode,
    FileOpt,
    MasqAllOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodeZoneOpt,
    RecursiveOpt,
    app,
    choose_backend,
    cli_errors,
    err,
    node_config,
    warn,
)
from svc2rules.errors import LockBusyError
from svc2rules.ir import Plan
from svc2rules.load import read_sources

BUSY = 3

StateDirOpt = Annotated[
    Path,
    typer.Option(
        "--state-dir", help="Where the last applied state and the lock live.", envvar="SVC2RULES_STATE_DIR"
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print what would be loaded; change nothing.")]
LockTimeoutOpt = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another run to finish (then exit 3).")
]
PrefixOpt = Annotated[str, typer.Option("--chain-prefix", help="Prefix of our iptables chains.")]
TableOpt = Annotated[str, typer.Option("--table", help="Name of our nftables table.")]
IpvsSchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--ipvs-scheduler", help="ipvs backend: scheduler (overrides the config file's ipvs.scheduler)."
    ),
]


def _render_options(chain_prefix: str, table: str, ipvs_scheduler: str | None) -> RenderOptions:
    extra: dict[str, object] = {}
    if ipvs_scheduler:
        # Imported here: the ipvs backend costs ~0.1 s to import and apply rarely needs it.
        from svc2rules.backends.ipvs.build import check_scheduler

        extra["ipvs_scheduler"] = check_scheduler(ipvs_scheduler, "--ipvs-scheduler")
    return RenderOptions(chain_prefix=chain_prefix, table=table, extra=extra)


@contextmanager
def _busy_is_3() -> Iterator[None]:
    try:
        yield
    except LockBusyError as exc:
        err(f"error: {exc}")
        raise typer.Exit(BUSY) from None


def _compile(
    filename: list[str] | None,
    recursive: bool,
    backend: str | None,
    config: Path | None,
    **node: object,
) -> tuple[Plan, str]:
    proxy_config, mode = node_config(config, **node)  # type: ignore[arg-type]
    backend_name = choose_backend(backend, mode)
    compiled = plan_from_paths(filename or [], recursive, sys.stdin.buffer, proxy_config)
    warn(compiled.warnings)
    return compiled.plan, backend_name


@app.command("apply")
def apply_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    backend: BackendOpt = None,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    dry_run: DryRunOpt = False,
    sysctl: Annotated[
        bool,
        typer.Option("--sysctl/--no-sysctl", help="Set the sysctls the rules need (else refuse when unset)."),
    ] = True,
    lock_timeout: LockTimeoutOpt = 60.0,
    chain_prefix: PrefixOpt = "SVC2R",
    table: TableOpt = "svc2rules",
    ipvs_scheduler: IpvsSchedulerOpt = None,
    timings: Annotated[bool, typer.Option("--timings", hidden=True)] = False,
    resync: Annotated[
        bool,
        typer.Option(
            "--resync", help="Do not trust the state file: read our rules back and reload them all."
        ),
    ] = False,
    conntrack_cleanup: Annotated[
        bool, typer.Option("--conntrack-cleanup/--no-conntrack-cleanup", hidden=True)
    ] = True,
) -> None:
    """Load the compiled rules onto this host: validated, one transaction, only what changed."""
    with cli_errors(), _busy_is_3():
        proxy_config, mode = node_config(
            config,
            node_name=node_name,
            node_ip=node_ip,
            node_zone=node_zone,
            cluster_cidr=cluster_cidr,
            masquerade_all=masquerade_all,
        )
        backend_name = choose_backend(backend, mode)
        sources = read_sources(filename or [], recursive=recursive, stdin=sys.stdin.buffer)
        options = _render_options(chain_prefix, table, ipvs_scheduler)

        report = apply_plan(
            ApplyInput(sources, proxy_config, warn),
            backend_name,
            options,
            ApplyOptions(
                state_dir=state_dir,
                dry_run=dry_run,
                sysctl=sysctl,
                lock_timeout=lock_timeout,
                conntrack=conntrack_cleanup,
                resync=resync,
            ),
            input_digest=input_digest(backend_name, proxy_config, options, sources),
        )
        print_report(report, verbose_timings=timings)
        if dry_run:
            if report.kind == "none":
                err("dry run: no changes; nothing would be written")
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
    backend: BackendOpt = None,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    lock_timeout: LockTimeoutOpt = 60.0,
    chain_prefix: PrefixOpt = "SVC2R",
    table: TableOpt = "svc2rules",
    ipvs_scheduler: IpvsSchedulerOpt = None,
) -> None:
    """Show our owned objects, live vs compiled (exit 0 none, 1 differences, >1 error)."""
    try:
        with cli_errors(), _busy_is_3():
            plan, backend_name = _compile(
                filename,
                recursive,
                backend,
                config,
                node_name=node_name,
                node_ip=node_ip,
                node_zone=node_zone,
                cluster_cidr=cluster_cidr,
                masquerade_all=masquerade_all,
            )
            options = _render_options(chain_prefix, table, ipvs_scheduler)
            text, changed = diff_plan(
                plan, backend_name, options, ApplyOptions(state_dir=state_dir, lock_timeout=lock_timeout)
            )
            sys.stdout.write(text)
            sys.stdout.flush()
    except typer.Exit as exc:
        # kubectl diff: 1 means "differences", so every error is > 1.
        raise typer.Exit(ExitCode.INVALID if exc.exit_code == ExitCode.FAILURE else exc.exit_code) from None
    raise typer.Exit(1 if changed else 0)


@app.command("cleanup")
def cleanup_command(
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    dry_run: DryRunOpt = False,
    lock_timeout: LockTimeoutOpt = 60.0,
    chain_prefix: PrefixOpt = "SVC2R",
    table: TableOpt = "svc2rules",
) -> None:
    """Remove everything svc2rules owns on this host (our chains and jumps, or our table)."""
    with cli_errors(), _busy_is_3():
        _, mode = node_config(
            config, node_name=None, node_ip=None, node_zone=None, cluster_cidr=None, masquerade_all=None
        )
        backend_name = choose_backend(backend, mode)
        options = RenderOptions(chain_prefix=chain_prefix, table=table)
        report = cleanup_host(
            backend_name,
            options,
            ApplyOptions(state_dir=state_dir, dry_run=dry_run, lock_timeout=lock_timeout),
        )
        print_report(report)
        if dry_run:
            sys.stdout.write(report.payload)
            err(f"dry run: would remove ({report.summary}); nothing was changed")
        elif report.kind == "none":
            err("cleanup: nothing of ours on this host")
        else:
            err(f"cleanup: {report.summary}")
