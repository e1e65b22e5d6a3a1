"""apply with the compile cache and the per-Service state, on the real kernel: a change is planned
from the changed Services alone, and a damaged, deleted or foreign cache or state only costs
time: the host always ends with the rules a fresh apply loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import BACKENDS, CLI, Host, drop_host, new_host, synthetic_cluster

pytestmark = pytest.mark.root


def moved(text: str, index: int = 1, address: str = "10.99.0.1") -> str:
    """One Service's first endpoint moves (items come in Service, EndpointSlice pairs)."""
    doc: dict[str, Any] = json.loads(text)
    doc["items"][index]["endpoints"][0]["addresses"] = [address]
    return json.dumps(doc)


@pytest.fixture
def fresh(tmp_path: Path) -> Any:
    hosts: list[Host] = []

    def make(role: str) -> Host:
        host = new_host(tmp_path, role)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        drop_host(host)


def apply(host: Host, manifest: Path, backend: str, *extra: str) -> str:
    proc = host.run(host.apply_argv(manifest, backend, "--timings", *extra), check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def applied(fresh: Any, tmp_path: Path, backend: str, services: int) -> tuple[Host, Host, Path, str]:
    """A host with `services` synthetic Services applied, a fresh host to compare it with, and
    the manifest with its text."""
    host, reference = fresh("inc"), fresh("ref")
    manifest = tmp_path / "cluster.json"
    base = synthetic_cluster(services, 2)
    manifest.write_text(base)
    apply(host, manifest, backend)
    return host, reference, manifest, base


def assert_as_fresh(host: Host, reference: Host, manifest: Path, backend: str) -> None:
    """The host has the rules a fresh apply of the manifest loads."""
    apply(reference, manifest, backend)
    assert host.ours(backend) == reference.ours(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_change_renders_and_writes_only_the_changed_service(
    fresh: Any, tmp_path: Path, backend: str
) -> None:
    host, reference, manifest, base = applied(fresh, tmp_path, backend, 60)
    assert (host.state_dir / f"{backend}.cache").exists()
    manifest.write_text(moved(base))
    stderr = apply(host, manifest, backend)
    assert "incremental" in stderr and "ignored" not in stderr, stderr
    proc = host.run(host.apply_argv(manifest, backend, "--dry-run"), check=False)
    assert proc.returncode == 0 and "no changes" in proc.stderr, proc.stderr
    assert_as_fresh(host, reference, manifest, backend)
    # Back, through a Service added and one removed on the way.
    doc = json.loads(base)
    doc["items"] = doc["items"][2:] + json.loads(synthetic_cluster(1, 3, shift=500))["items"]
    doc["items"][-2]["metadata"]["name"] = doc["items"][-1]["metadata"]["labels"][
        "kubernetes.io/service-name"
    ] = "svc-new"
    doc["items"][-2]["spec"]["clusterIP"] = "172.21.0.9"
    manifest.write_text(json.dumps(doc))
    assert "incremental" in apply(host, manifest, backend)
    assert_as_fresh(host, reference, manifest, backend)


def _damage(host: Host, backend: str, what: str) -> None:
    state = host.state_dir
    if what == "cache deleted":
        for path in state.glob(f"{backend}.cache*"):
            path.unlink()
    elif what == "cache garbage":
        path = state / f"{backend}.cache"
        path.write_bytes(b"\0garbage" * 100)
    elif what == "cache objects truncated":
        path = state / f"{backend}.cache-objects"
        path.write_bytes(path.read_bytes()[:100])
    elif what == "state bulk deleted":
        for path in state.glob(f"{backend}.*.bulk"):
            path.unlink()
    elif what == "state bulk damaged":
        for path in state.glob(f"{backend}.*.bulk"):
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "what",
    ["cache deleted", "cache garbage", "cache objects truncated", "state bulk deleted", "state bulk damaged"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_damaged_cache_or_state_only_costs_time(
    fresh: Any, tmp_path: Path, backend: str, what: str
) -> None:
    host, reference, manifest, base = applied(fresh, tmp_path, backend, 30)
    _damage(host, backend, what)
    manifest.write_text(moved(base, 3))
    stderr = apply(host, manifest, backend)
    if what == "cache garbage":
        assert "compile cache" in stderr and "ignored" in stderr, stderr
    if what.startswith("state"):
        assert "missing or damaged bulk file" in stderr, stderr
    assert_as_fresh(host, reference, manifest, backend)
    # And the run after is incremental again.
    manifest.write_text(base)
    assert "incremental" in apply(host, manifest, backend)
    assert_as_fresh(host, reference, manifest, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_input_is_reported_as_a_compile_reports_it(fresh: Any, tmp_path: Path, backend: str) -> None:
    host = fresh("inc")
    manifest = tmp_path / "cluster.json"
    base = synthetic_cluster(20, 2)
    manifest.write_text(base)
    apply(host, manifest, backend)
    before = host.ours(backend)
    doc = json.loads(base)
    doc["items"][2]["spec"]["ports"][0]["port"] = 70000
    doc["items"][5]["endpoints"][0]["addresses"] = ["10.1.2.300"]
    doc["items"].append(doc["items"][8])  # an unchanged object, twice
    manifest.write_text(json.dumps(doc))
    proc = host.run(host.apply_argv(manifest, backend), check=False)
    compiled = host.run([CLI, "compile", "-f", str(manifest), "--backend", backend], check=False)
    assert (proc.returncode, compiled.returncode) == (2, 2)
    assert proc.stderr.splitlines() == compiled.stderr.splitlines()
    assert len(proc.stderr.splitlines()) == 3, proc.stderr
    assert host.ours(backend) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_cleanup_forgets_the_cache(fresh: Any, tmp_path: Path, backend: str) -> None:
    host = fresh("inc")
    manifest = tmp_path / "cluster.json"
    manifest.write_text(synthetic_cluster(5, 2))
    apply(host, manifest, backend)
    assert list(host.state_dir.glob(f"{backend}.*"))
    proc = host.cli("cleanup", backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in host.state_dir.iterdir() if p.name != "lock"] == []
