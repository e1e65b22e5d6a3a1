"""The fake host: commands go to emulators; a scratch namespace starts empty and is thrown away."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from svc2rules.errors import ApplyError
from svc2rules.host.fake import FakeRunner


class Counter:
    """A tool that counts its runs in its namespace and echoes its input."""

    commands = ("count",)

    def __init__(self) -> None:
        self.runs = 0

    def run(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        self.runs += 1
        return 0, f"{self.runs} {stdin or ''}", ""


def test_commands_reach_their_emulator_and_are_recorded() -> None:
    runner = FakeRunner(Counter)
    assert runner.run(["count"], stdin="x").stdout == "1 x"
    assert runner.run(["count"], loader=True).stdout == "2 "
    assert runner.emulator(Counter).runs == 2
    assert [call.argv for call in runner.loads()] == [("count",)]
    assert runner.log == [("count",), ("count",)]


def test_a_scratch_namespace_is_fresh_every_time_and_leaves_the_host_alone() -> None:
    runner = FakeRunner(Counter)
    runner.run(["count"])
    assert runner.run(["unshare", "--net", "--", "count"]).stdout == "1 "
    assert runner.run(["unshare", "--net", "--", "count"]).stdout == "1 "
    assert runner.emulator(Counter).runs == 1
    assert [call.scratch for call in runner.calls] == [False, True, True]


def test_a_tool_without_an_emulator_is_not_installed() -> None:
    with pytest.raises(ApplyError, match="nft not found"):
        FakeRunner(Counter).run(["nft", "list", "ruleset"])


def test_run_many_runs_each_in_order() -> None:
    assert [r.stdout for r in FakeRunner(Counter).run_many([["count"], ["count"]])] == ["1 ", "2 "]
