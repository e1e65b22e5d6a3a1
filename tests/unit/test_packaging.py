"""A built wheel carries its templates and compiles from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed: {proc.stderr}")
    (wheel_path,) = out.glob("svc2rules-*.whl")
    return wheel_path


def test_wheel_ships_every_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*.j2"))
    assert templates, "no templates in the checkout"
    for template in templates:
        assert f"svc2rules/{template}" in names


def test_installed_wheel_compiles_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    # The wheel is pure Python: putting it on sys.path is what an installation does,
    # minus the copying, and nothing from the checkout can leak in from another cwd.
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from svc2rules.cli import main; main(sys.argv[2:])",
            str(wheel),
            "compile",
            "-f",
            str(ROOT / "examples" / "cluster.yaml"),
            "--node-name",
            "node1",
            "--node-ip",
            "192.168.0.2",
            "--cluster-cidr",
            "10.0.0.0/8",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "*nat" in proc.stdout and "SVC2R-SERVICES" in proc.stdout
    import_check = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import svc2rules; print(svc2rules.__file__)",
            str(wheel),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert import_check.stdout.startswith(str(wheel))
