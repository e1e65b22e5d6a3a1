"""`svc2rules explain`: which Service port a connection hits and what happens to it, or (with
--service) why a Service has the endpoints it has."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated

import typer

from svc2rules import compile as compile_path
from svc2rules.addresses import canonical_ip
from svc2rules.cli.common import (
    BackendOpt,
    ClusterCIDROpt,
    ConfigOpt,
    ExitCode,
    FileOpt,
    MasqAllOpt,
    MaxInputBytesOpt,
    NodeIPOpt,
    NodeNameOpt,
    NodePortAddressesOpt,
    NodeZoneOpt,
    RecursiveOpt,
    ServiceCIDROpt,
    app,
    choose_backend,
    cli_errors,
    comma_list,
    node_config,
    warn,
)
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError, quote_value
from svc2rules.explain import Explanation, Origin, Query, Verdict, explain, format_text
from svc2rules.explain.text import format_diagnosis
from svc2rules.explain.why import diagnose
from svc2rules.ir import Protocol
from svc2rules.load import read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

_PROTOCOLS = {p.keyword: p for p in Protocol}


@app.command(
    "explain",
    epilog="Examples: svc2rules explain -f cluster.yaml --src 203.0.113.1 --dst 172.30.0.21 --port 80; "
    "svc2rules explain -f cluster.yaml --service shop/web",
)
def explain_command(
    src: Annotated[str | None, typer.Option("--src", help="Source address of the connection.")] = None,
    dst: Annotated[str | None, typer.Option("--dst", help="Destination address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Destination port.")] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            metavar="NAMESPACE/NAME",
            help="Instead of a connection: why this Service has the endpoints it has (what its "
            "selector matches, which Pods are left out and why).",
        ),
    ] = None,
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
    nodeport_addresses: NodePortAddressesOpt = None,
    service_cidr: ServiceCIDROpt = None,
    config: ConfigOpt = None,
    output: Annotated[
        str, typer.Option("-o", "--output", help="'text' (default) or 'json' (stable keys).")
    ] = "text",
) -> None:
    """Explain what happens to one connection: matched Service port, policies, endpoints,
    masquerade (and, when the Service has no ready endpoints, why). With --service: why a Service
    has no (ready) endpoints."""
    with cli_errors():
        if output not in ("text", "json"):
            raise UsageError(f"--output must be 'text' or 'json', got {quote_value(output)}")
        ref = _service_ref(service) if service is not None else None
        query = None
        if ref is None:
            if src is None or dst is None or port is None:
                raise UsageError("--src, --dst and --port are needed (or --service NAMESPACE/NAME)")
            query = Query(
                src=_address("--src", src),
                dst=_address("--dst", dst),
                port=_port(port),
                protocol=_protocol(proto),
                origin=_origin(origin),
            )
            if (":" in query.src) != (":" in query.dst):
                raise UsageError("--src and --dst must be of the same IP family")
        elif src is not None or dst is not None or port is not None:
            raise UsageError(
                "--service explains a Service, not a connection: leave out --src, --dst and --port"
            )
        if ref is not None:
            # What a Service's endpoints are does not depend on the node: no node facts asked.
            sources = read_sources(
                filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
            )
            compiled = compile_path.compile_sources(sources, ProxyConfig(), keep_models=True)
            warn(compiled.warnings)
            diagnosis = diagnose(compiled.models, *ref)
            if output == "json":
                sys.stdout.write(json.dumps(diagnosis.to_dict(), indent=2, sort_keys=True) + "\n")
            else:
                sys.stdout.write(format_diagnosis(diagnosis.lines()))
            sys.stdout.flush()
            if not diagnosis.found:
                raise typer.Exit(ExitCode.FAILURE)
            return
        assert query is not None
        proxy_config, mode = node_config(
            config,
            node_name=node_name,
            node_ip=node_ip,
            node_zone=node_zone,
            cluster_cidr=cluster_cidr,
            masquerade_all=masquerade_all,
            node_port_addresses=nodeport_addresses,
            extra={"service_cidrs": comma_list(service_cidr)},
        )
        backend_name = choose_backend(backend, mode)
        sources = read_sources(
            filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
        )
        compiled = compile_path.compile_sources(sources, proxy_config, keep_models=True)
        warn(compiled.warnings)
        result = explain(compiled.plan(), query, backend_name)
        if result.match is not None and _lacks_endpoints(result):
            why = diagnose(compiled.models, result.match.namespace, result.match.service)
            result = dataclasses.replace(result, why=tuple(why.lines(result.match.port_name)))
        if output == "json":
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(format_text(result))
        sys.stdout.flush()


def _lacks_endpoints(result: Explanation) -> bool:
    """Refused or dropped for want of endpoints, or sent to terminating ones only."""
    if result.verdict in (Verdict.REJECT, Verdict.DROP, Verdict.NONE):
        return "endpoints" in result.reason
    return result.verdict == Verdict.DNAT and not any(c.ready for c in result.endpoints)


def _service_ref(text: str) -> tuple[str, str]:
    """NAMESPACE/NAME (a bare NAME is in namespace default, as kubectl reads it)."""
    namespace, slash, name = text.partition("/")
    if not slash:
        namespace, name = "default", text
    if not namespace or not name or "/" in name:
        raise UsageError(f"--service must be NAMESPACE/NAME, got {quote_value(text)}")
    return namespace, name


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
