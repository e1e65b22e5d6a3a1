"""Discovery and rendering of golden cases, shared by the test and the regenerator.

A case is a folder `golden/<case>/` with:
  input.yaml | input.json   the manifests
  args                      optional: extra `svc2rules compile` flags, one shell line
                            (default node flags are used when it has no --node-name)
  expected.<backend>        expected stdout of `compile --backend <backend>`
  expected.ir.json          expected `compile -o ir`
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from svc2rules.backends import available_backends
from svc2rules.cli import app

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"
DEFAULT_ARGS = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
REGENERATE = "make golden"
# Every backend's output is compared for every case.
GOLDEN_BACKENDS = tuple(available_backends())


@dataclass(frozen=True)
class Case:
    name: str
    path: Path

    @property
    def input(self) -> Path:
        for candidate in ("input.yaml", "input.json"):
            if (self.path / candidate).exists():
                return self.path / candidate
        raise FileNotFoundError(f"{self.path}: no input.yaml or input.json")

    @property
    def args(self) -> list[str]:
        extra_file = self.path / "args"
        extra = shlex.split(extra_file.read_text()) if extra_file.exists() else []
        extra = [a.replace("{case}", str(self.path)) for a in extra]
        return extra if "--node-name" in extra else [*DEFAULT_ARGS, *extra]

    def expected(self, output: str) -> Path:
        return self.path / f"expected.{output}"


def cases() -> list[Case]:
    return [Case(p.name, p) for p in sorted(GOLDEN.iterdir()) if p.is_dir()]


def outputs() -> list[str]:
    return [*GOLDEN_BACKENDS, "ir.json"]


def run_case(case: Case, output: str) -> str:
    """stdout of the CLI for one case and output; raises with stderr when it fails."""
    if output == "ir.json":
        argv = ["compile", "-f", str(case.input), "-o", "ir", *case.args]
    else:
        argv = ["compile", "-f", str(case.input), "--backend", output, *case.args]
    result = CliRunner().invoke(app, argv)
    if result.exit_code != 0:
        raise RuntimeError(f"svc2rules {' '.join(argv)} exited {result.exit_code}: {result.stderr}")
    text = result.stdout
    if output == "ir.json":
        # Source paths depend on where the checkout lives; keep goldens portable.
        text = text.replace(str(ROOT) + "/", "")
    return text
