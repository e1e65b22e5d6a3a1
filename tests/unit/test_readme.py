"""README's shell examples run as printed, from the checkout's top folder, with the command on
PATH (as after README's "Install").

A ```sh block runs as it is, in a scratch folder that has the checkout's `examples/`. The line
before a block can say otherwise: `<!-- readme-test: root -->` runs it as root in a network
namespace of its own (so it changes no rules of this machine; skipped when not root), and
`<!-- readme-test: not run (why) -->` leaves it out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```sh\n(?P<body>.*?)```", re.DOTALL)
# As root the examples' `sudo` is the command itself (sudo may not even be installed).
PRELUDE = 'set -euo pipefail\nsudo() { "$@"; }\n'


@dataclass(frozen=True, slots=True)
class Example:
    line: int
    mark: str
    body: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


def examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    return [
        Example(text.count("\n", 0, match.start("body")), match.group("mark") or "", match.group("body"))
        for match in BLOCK.finditer(text)
    ]


def cases() -> list[object]:
    out: list[object] = []
    for example in examples():
        if example.mark.startswith("not run"):
            continue
        marks = [pytest.mark.root] if example.mark == "root" else []
        out.append(pytest.param(example, id=example.id, marks=marks))
    return out


def test_every_block_is_run_or_says_why_not() -> None:
    for example in examples():
        assert example.mark in ("", "root") or re.fullmatch(r"not run \(.+\)", example.mark), example.id


@pytest.mark.parametrize("example", cases())
def test_readme_example_runs_as_printed(example: Example, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        # The command as installed: the console script next to this interpreter.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/sbin", "/sbin", os.environ["PATH"]]),
        # apply's state stays in the scratch folder, not in /var/lib/svc2rules.
        "SVC2RULES_STATE_DIR": str(tmp_path / "state"),
    }
    argv = ["bash", "-c", PRELUDE + example.body]
    if example.mark == "root":
        argv = ["unshare", "--net", "--", *argv]
    proc = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{example.id} exited {proc.returncode}:\n{proc.stderr}"
