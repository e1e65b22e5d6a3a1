"""`svc2rules compile`: manifests to a ruleset on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from svc2rules import compile as compile_path
from svc2rules.backends import DEFAULT_CHAIN_PREFIX, DEFAULT_TABLE, Comments, get_backend
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    MasqAllOpt,
    MaxInputBytesOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodePortAddressesOpt,
    NodeZoneOpt,
    RecursiveOpt,
    ServiceCIDROpt,
    StrictConfigOpt,
    app,
    choices,
    cli_errors,
    completes,
    err,
    warn,
)
from svc2rules.cli.options import (
    NODE_INDEPENDENT_BACKENDS,
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
from svc2rules.errors import UsageError, quote_value
from svc2rules.load import Source, read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

# `ir` is the first name of `json` (the resolved model as canonical JSON), kept as it was.
OUTPUTS = ("rules", "json", "yaml", "ir")


@app.command(
    "compile",
    epilog="Example: svc2rules compile -f examples/cluster.yaml --node-name node1 --node-ip "
    "192.168.0.2 --cluster-cidr 10.0.0.0/8 > rules.v4",
)
def compile_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    backend: BackendOpt = None,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    nodeport_addresses: NodePortAddressesOpt = None,
    service_cidr: ServiceCIDROpt = None,
    config: ConfigOpt = None,
    strict_config: StrictConfigOpt = False,
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar=choices(OUTPUTS),
            autocompletion=completes(OUTPUTS),
            help="'rules': the ruleset; 'json' (or 'ir') / 'yaml': the resolved model every backend "
            "renders from.",
        ),
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
    """Compile manifests (Services, EndpointSlices, Endpoints) into the chosen backend's ruleset
    on stdout; diagnostics on stderr. Pure: reads no host state, so the output depends on the
    input and the flags alone (warnings say which node facts are missing)."""
    with cli_errors():
        if output not in OUTPUTS:
            raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, got {quote_value(output)}")
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
                strict_config=strict_config,
            ),
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
        sources = read_sources(
            filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
        )
        compiled = compile_path.compile_sources(sources, chosen.config)
        warn(compiled.warnings)
        if not compiled.services:
            err(f"warning: {_no_services(sources)}")
        plan = compiled.plan()
        if output != "rules" or chosen.backend not in NODE_INDEPENDENT_BACKENDS:
            chosen.warn_missing_facts()
        if output in ("ir", "json"):
            sys.stdout.write(plan.to_json())
            sys.stdout.flush()
            return
        if output == "yaml":
            sys.stdout.write(_yaml(plan.to_json()))
            sys.stdout.flush()
            return
        artifact = get_backend(chosen.backend).render(plan, chosen.render)
        for warning in artifact.warnings:
            err(f"warning: {warning}")
        sys.stdout.write(artifact.text)
        sys.stdout.flush()


def _yaml(canonical_json: str) -> str:
    """The model as YAML: the same data and key order as the canonical JSON."""
    import json

    import yaml

    return yaml.safe_dump(json.loads(canonical_json), sort_keys=False, default_flow_style=False)


def _no_services(sources: list[Source]) -> str:
    names = ", ".join(dict.fromkeys(source.name for source in sources)) or "the input"
    return (
        f"{names}: no Service objects: the output has no Service rules, and loading it removes "
        "every Service's (a failed kubectl, a folder read without -R?)"
    )
