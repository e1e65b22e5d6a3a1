"""Every golden case renders byte-identically to its expected files, for every backend."""

from __future__ import annotations

import difflib

import pytest

from tests.golden.cases import REGENERATE, Case, cases, outputs, run_case

CASES = cases()


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("output", outputs())
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case, output: str) -> None:
    expected_path = case.expected(output)
    assert expected_path.exists(), f"{expected_path} is missing; run `{REGENERATE}` and review it"
    actual = run_case(case, output)
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=str(expected_path),
                tofile="actual",
            )
        )
        pytest.fail(f"golden mismatch for {case.name} ({output}):\n{diff}\nIf intended, run `{REGENERATE}`.")
