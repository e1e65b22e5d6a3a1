"""`svc2rules endpoints`: the EndpointSlices the EndpointSlice controller would write for the
input's Services, from its Pods (and Nodes); `--compare`: where the input's own slices differ."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from svc2rules import compile as compile_path
from svc2rules.cli.common import (
    ExitCode,
    FileOpt,
    MaxInputBytesOpt,
    RecursiveOpt,
    app,
    choices,
    cli_errors,
    completes,
    err,
    warn,
)
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError, quote_value
from svc2rules.load import read_sources
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES

OUTPUTS = ("yaml", "json")


@app.command(
    "endpoints",
    epilog="Examples: kubectl get pods,nodes,svc -A -o yaml | svc2rules endpoints; "
    "kubectl get pods,nodes,svc,endpointslices -A -o yaml | svc2rules endpoints --compare",
)
def endpoints_command(
    filename: FileOpt = None,
    recursive: RecursiveOpt = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar=choices(OUTPUTS),
            autocompletion=completes(OUTPUTS),
            help="A List of EndpointSlices as YAML (default) or JSON; with --compare, the differences "
            "as lines (yaml) or as a JSON object.",
        ),
    ] = "yaml",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Report where the input's own EndpointSlices differ from what its Pods imply (stale, "
            "missing or changed endpoints); exit 1 when they differ, as kubectl diff.",
        ),
    ] = False,
) -> None:
    """Print the EndpointSlices the EndpointSlice controller would write for the input's Services
    with a selector, derived from the input's Pods and Nodes (at most 100 endpoints each; names
    are the controller's `<service>-` prefix plus five characters from a hash, where the
    controller's are random). With --compare, report the differences instead."""
    with cli_errors():
        if output not in OUTPUTS:
            raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, got {quote_value(output)}")
        sources = read_sources(
            filename or [], recursive=recursive, stdin=sys.stdin.buffer, max_bytes=max_input_bytes
        )
        compiled = compile_path.compile_sources(sources, ProxyConfig(), keep_models=True)
        warn([w for w in compiled.warnings if w not in compiled.summaries])
        if compare:
            _compare(compiled.models, output)
            return
        from svc2rules.resolve.derive import derive_all

        items = [sl.manifest() for sl in derive_all(compiled.models)]
        _print({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}, output)


def _compare(models: list[Any], output: str) -> None:
    from svc2rules.explain.stale import compare
    from svc2rules.model.pod import Pod

    if not any(isinstance(model, Pod) for model in models):
        raise UsageError(
            "--compare: the input has no Pods to compare its EndpointSlices with "
            "(kubectl get pods,nodes,svc,endpointslices -A -o yaml)"
        )
    differences = compare(models)
    if output == "json":
        sys.stdout.write(json.dumps({"differences": [d.to_dict() for d in differences]}, indent=2) + "\n")
    else:
        sys.stdout.write("".join(f"{d}\n" for d in differences))
    sys.stdout.flush()
    if differences:
        err(f"{len(differences)} difference(s) between the input's EndpointSlices and its Pods")
        raise typer.Exit(ExitCode.DIFFERENT)


def _print(data: dict[str, Any], output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    sys.stdout.flush()
