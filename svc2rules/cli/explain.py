"""`svc2rules explain`: which Service port a connection hits and what happens to it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from svc2rules.addresses import canonical_ip
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    FileOpt,
    MasqAllOpt,
    MaxInputBytesOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodeZoneOpt,
    RecursiveOpt,
    app,
    choose_backend,
    cli_errors,
    node_config,
    warn,
)
from svc2rules.compile import compile_sources
from svc2rules.errors import UsageError, quote_value
from svc2rules.explain import Origin, Query, explain, format_text
from svc2rules.ir import Protocol
from svc2rules.load import read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

_PROTOCOLS = {p.keyword: p for p in Protocol}


@app.command("explain")
def explain_command(
    src: Annotated[str, typer.Option("--src", help="Source address of the connection.")],
    dst: Annotated[str, typer.Option("--dst", help="Destination address.")],
    port: Annotated[int, typer.Option("--port", help="Destination port.")],
    proto: Annotated[str, typer.Option("--proto", help="tcp, udp or sctp.")] = "tcp",
    origin: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="external, pod or node. Default: node for a node address or loopback, "
            "pod inside the cluster CIDR, else external.",
        ),
    ] = None,
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    backend: BackendOpt = None,
    node_name: NodeNameOpt = None,
    node_ip: NodeIPOpt = None,
    node_zone: NodeZoneOpt = None,
    cluster_cidr: ClusterCIDROpt = None,
    masquerade_all: MasqAllOpt = None,
    config: ConfigOpt = None,
    output: Annotated[
        str, typer.Option("-o", "--output", help="'text' (default) or 'json' (stable keys).")
    ] = "text",
) -> None:
    """Explain what happens to one connection: matched Service port, policies, endpoints, masquerade."""
    with cli_errors():
        if output not in ("text", "json"):
            raise UsageError(f"--output must be 'text' or 'json', got {quote_value(output)}")
        query = Query(
            src=_address("--src", src),
            dst=_address("--dst", dst),
            port=_port(port),
            protocol=_protocol(proto),
            origin=_origin(origin),
        )
        if (":" in query.src) != (":" in query.dst):
            raise UsageError("--src and --dst must be of the same IP family")
        proxy_config, mode = node_config(
            config,
            node_name=node_name,
            node_ip=node_ip,
            node_zone=node_zone,
            cluster_cidr=cluster_cidr,
            masquerade_all=masquerade_all,
        )
        backend_name = choose_backend(backend, mode)
        sources = read_sources(
            filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
        )
        compiled = compile_sources(sources, proxy_config)
        warn(compiled.warnings)
        result = explain(compiled.plan(), query, backend_name)
        if output == "json":
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(format_text(result))
        sys.stdout.flush()


def _address(flag: str, text: str) -> str:
    parsed = canonical_ip(text.strip())
    if parsed is None:
        raise UsageError(f"{flag}: invalid IP address {quote_value(text)}")
    return parsed[1]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {value}")
    return value


def _protocol(text: str) -> Protocol:
    try:
        return _PROTOCOLS[text.lower()]
    except KeyError:
        raise UsageError(f"--proto must be tcp, udp or sctp, got {quote_value(text)}") from None


def _origin(text: str | None) -> Origin | None:
    if text is None:
        return None
    try:
        return Origin(text)
    except ValueError:
        raise UsageError(f"--from must be external, pod or node, got {quote_value(text)}") from None
