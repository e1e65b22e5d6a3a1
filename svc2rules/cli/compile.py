"""`svc2rules compile`: manifests to a ruleset on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from svc2rules.backends import DEFAULT_CHAIN_PREFIX, DEFAULT_TABLE, Comments, get_backend
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    MasqAllOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodeZoneOpt,
    RecursiveOpt,
    app,
    cli_errors,
    err,
    warn,
)
from svc2rules.cli.options import (
    ChainPrefixOpt,
    ClusterDomainOpt,
    CommentsOpt,
    DnsFormatOpt,
    DnsServerIPOpt,
    IpvsSchedulerOpt,
    JumpsOpt,
    NftLayoutOpt,
    NodeFlags,
    RenderFlags,
    TableOpt,
    build_options,
)
from svc2rules.compile import compile_sources
from svc2rules.errors import UsageError
from svc2rules.load import read_sources


@app.command("compile")
def compile_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    backend: BackendOpt = None,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    config: ConfigOpt = None,
    output: Annotated[
        str,
        typer.Option("-o", "--output", help="'rules' (the ruleset) or 'ir' (the resolved model as JSON)."),
    ] = "rules",
    comments: CommentsOpt = Comments.AUTO,
    chain_prefix: ChainPrefixOpt = DEFAULT_CHAIN_PREFIX,
    table: TableOpt = DEFAULT_TABLE,
    jumps: JumpsOpt = True,
    cluster_domain: ClusterDomainOpt = None,
    dns_format: DnsFormatOpt = None,
    dns_server_ip: DnsServerIPOpt = None,
    ipvs_scheduler: IpvsSchedulerOpt = None,
    nft_layout: NftLayoutOpt = None,
) -> None:
    """Compile manifests into a ruleset on stdout (diagnostics on stderr)."""
    with cli_errors():
        if output not in ("rules", "ir"):
            raise UsageError(f"--output must be 'rules' or 'ir', got {output!r}")
        chosen = build_options(
            NodeFlags(config, node_name, node_ip, node_zone, cluster_cidr, masquerade_all),
            RenderFlags(
                comments,
                chain_prefix,
                table,
                jumps,
                nft_layout=nft_layout,
                ipvs_scheduler=ipvs_scheduler,
                cluster_domain=cluster_domain,
                dns_format=dns_format,
                dns_server_ip=dns_server_ip,
            ),
            backend,
        )
        sources = read_sources(filename or [], recursive=recursive, stdin=sys.stdin.buffer)
        compiled = compile_sources(sources, chosen.config)
        warn(compiled.warnings)
        plan = compiled.plan()
        if output == "ir":
            sys.stdout.write(plan.to_json())
            sys.stdout.flush()
            return
        artifact = get_backend(chosen.backend).render(plan, chosen.render)
        for warning in artifact.warnings:
            err(f"warning: {warning}")
        sys.stdout.write(artifact.text)
        sys.stdout.flush()
