"""`svc2rules compile`: manifests to a ruleset on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from svc2rules.api import plan_from_paths, render
from svc2rules.backends import RenderOptions
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
    choose_backend,
    cli_errors,
    err,
    node_config,
    warn,
)
from svc2rules.errors import UsageError


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
    comments: Annotated[
        str, typer.Option("--comments", help="Rule comments: auto (kube-proxy's), always or never.")
    ] = "auto",
    chain_prefix: Annotated[
        str, typer.Option("--chain-prefix", help="Prefix of our iptables chains.")
    ] = "SVC2R",
    table: Annotated[str, typer.Option("--table", help="Name of our nftables table.")] = "svc2rules",
    jumps: Annotated[
        bool, typer.Option("--jumps/--no-jumps", help="Include the jumps from the built-in chains.")
    ] = True,
    cluster_domain: Annotated[
        str | None, typer.Option("--cluster-domain", help="dns backend: the cluster domain (cluster.local).")
    ] = None,
    dns_format: Annotated[
        str | None, typer.Option("--dns-format", help="dns backend: 'zone' (RFC 1035 zone file) or 'hosts'.")
    ] = None,
    dns_server_ip: Annotated[
        str | None,
        typer.Option("--dns-server-ip", help="dns backend: NS glue address (default: kube-dns ClusterIP)."),
    ] = None,
    ipvs_scheduler: Annotated[
        str | None,
        typer.Option(
            "--ipvs-scheduler",
            help="ipvs backend: scheduler (rr, lc, dh, sh, sed, nq, wrr, wlc, lblc, lblcr, mh); "
            "overrides the config file's ipvs.scheduler.",
        ),
    ] = None,
    nft_layout: Annotated[
        str | None,
        typer.Option(
            "--nft-layout",
            help="nftables backend: 'grouped' (default; object count independent of the number of "
            "Services) or 'kube-proxy' (kube-proxy's per-Service chains).",
        ),
    ] = None,
) -> None:
    """Compile manifests into a ruleset on stdout (diagnostics on stderr)."""
    with cli_errors():
        if output not in ("rules", "ir"):
            raise UsageError(f"--output must be 'rules' or 'ir', got {output!r}")
        if comments not in ("auto", "always", "never"):
            raise UsageError(f"--comments must be auto, always or never, got {comments!r}")
        proxy_config, mode = node_config(
            config,
            node_name=node_name,
            node_ip=node_ip,
            node_zone=node_zone,
            cluster_cidr=cluster_cidr,
            masquerade_all=masquerade_all,
        )
        backend_name = choose_backend(backend, mode)
        compiled = plan_from_paths(filename or [], recursive, sys.stdin.buffer, proxy_config)
        warn(compiled.warnings)
        if output == "ir":
            sys.stdout.write(compiled.plan.to_json())
            sys.stdout.flush()
            return
        dns = {"cluster_domain": cluster_domain, "dns_format": dns_format, "dns_server_ip": dns_server_ip}
        extra = {key: value for key, value in dns.items() if value is not None}
        if nft_layout is not None:
            extra["nft_layout"] = nft_layout
        if ipvs_scheduler is not None:
            # Imported here: the ipvs backend costs ~0.1 s to import, most runs do not need it.
            from svc2rules.backends.ipvs.build import check_scheduler

            extra["ipvs_scheduler"] = check_scheduler(ipvs_scheduler, "--ipvs-scheduler")
        options = RenderOptions(
            comments=comments, chain_prefix=chain_prefix, table=table, jumps=jumps, extra=extra
        )
        artifact = render(compiled.plan, backend_name, options)
        for warning in artifact.warnings:
            err(f"warning: {warning}")
        sys.stdout.write(artifact.text)
        sys.stdout.flush()
