"""Every golden case with Pods: compiling it gives exactly the IR of its Services compiled with
the EndpointSlices the EndpointSlice controller would write (hand-derived in the case's
controller-slices.yaml), and `svc2rules endpoints` writes slices that do the same."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.golden.cases import Case, cases

runner = CliRunner()
POD_CASES = [case for case in cases() if (case.path / "controller-slices.yaml").exists()]


def ir(case: Case, stdin: str) -> str:
    result = runner.invoke(app, ["compile", "-o", "ir", *case.args], input=stdin)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def services_of(case: Case) -> list[dict[str, Any]]:
    return [obj for obj in yaml.safe_load_all(case.input.read_text()) if obj and obj["kind"] == "Service"]


def test_there_are_golden_cases_with_pods() -> None:
    assert len(POD_CASES) >= 5
    for case in POD_CASES:
        assert "kind: Pod" in case.input.read_text()


@pytest.mark.parametrize("case", POD_CASES, ids=[c.name for c in POD_CASES])
def test_pods_compile_to_the_ir_of_the_controllers_slices(case: Case) -> None:
    by_slices = (
        yaml.safe_dump_all(services_of(case)) + "---\n" + (case.path / "controller-slices.yaml").read_text()
    )
    assert ir(case, case.input.read_text()) == ir(case, by_slices)


@pytest.mark.parametrize("case", POD_CASES, ids=[c.name for c in POD_CASES])
def test_the_slices_svc2rules_endpoints_writes_compile_to_the_same_ir(case: Case) -> None:
    written = runner.invoke(app, ["endpoints", "-f", str(case.input)])
    assert written.exit_code == 0, written.stderr
    live = [
        o
        for o in yaml.safe_load_all(case.input.read_text())
        if o and o["kind"] in ("EndpointSlice", "Endpoints")
    ]
    derived = yaml.safe_load(written.stdout)["items"]
    # Services with slices of their own keep them: written slices for them are not what compile reads.
    owners = {
        (
            o["metadata"]["namespace"],
            o["metadata"].get("labels", {}).get("kubernetes.io/service-name", o["metadata"]["name"]),
        )
        for o in live
    }
    derived = [
        sl
        for sl in derived
        if (sl["metadata"]["namespace"], sl["metadata"]["labels"]["kubernetes.io/service-name"]) not in owners
    ]
    by_written = yaml.safe_dump_all([*services_of(case), *live, *derived])
    assert ir(case, case.input.read_text()) == ir(case, by_written)
