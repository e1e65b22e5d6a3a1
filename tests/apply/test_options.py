"""apply takes the same options as compile, and refuses to wipe the host on an empty input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import NODE_ARGS

from .helpers import BACKENDS, CLI, Host, small_cluster

pytestmark = pytest.mark.root

RENDER_FLAGS = {
    "iptables": [
        ["--comments", "always"],
        ["--comments", "never", "--no-jumps"],
        ["--chain-prefix", "ABC"],
    ],
    "nftables": [
        ["--nft-layout", "kube-proxy"],
        ["--nft-layout", "kube-proxy", "--comments", "never", "--no-jumps"],
        ["--comments", "always", "--table", "other"],
    ],
}


def _write(folder: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("backend", "flags"), [(b, f) for b, sets in RENDER_FLAGS.items() for f in sets], ids=str
)
def test_a_dry_run_on_an_empty_host_prints_exactly_what_compile_prints(
    host: Host, manifests: Path, backend: str, flags: list[str]
) -> None:
    path = _write(manifests, small_cluster())
    compiled = host.run([CLI, "compile", "--backend", backend, "-f", str(path), *NODE_ARGS, *flags])
    assert compiled.returncode == 0, compiled.stderr
    dry = host.cli("apply", "-f", str(path), "--dry-run", *flags, backend=backend)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == compiled.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_without_services_is_refused_and_leaves_the_host_alone(
    host: Host, manifests: Path, backend: str
) -> None:
    path = _write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    before = host.ruleset()

    empty = host.cli("apply", "-f", "-", backend=backend, stdin="")
    assert empty.returncode == 2
    lines = empty.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Service objects" in lines[0] and "--allow-empty" in lines[0], lines
    assert host.ruleset() == before

    # A folder read without -R: its subfolder's manifests are not read.
    nested = manifests / "nested"
    nested.mkdir()
    _write(nested, small_cluster())
    (manifests / "cluster.yaml").unlink()
    flat = host.cli("apply", "-f", str(manifests), backend=backend)
    assert flat.returncode == 2 and "-R" in flat.stderr, flat.stderr
    assert host.ruleset() == before

    insisted = host.cli("apply", "-f", "-", "--allow-empty", backend=backend, stdin="")
    assert insisted.returncode == 0, insisted.stderr
    assert host.ruleset() != before
