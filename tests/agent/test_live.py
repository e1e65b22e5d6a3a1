"""The live compile of `run`: after any sequence of changed sources, what it holds is what a full
compile of every source gives (Services, fingerprints, plan), while a change compiles only the
sources it can affect."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from svc2rules.agent.live import LiveCompiler, OrderKey
from svc2rules.compile import compile_sources
from svc2rules.config import ProxyConfig
from svc2rules.load import Source
from tests.conftest import endpoint, endpoint_slice, service, to_yaml

CONFIG = ProxyConfig.model_validate(
    {"node_name": "node1", "node_ips": ("192.168.0.2",), "cluster_cidrs": ("10.0.0.0/8",)}
)


def _objects(rng: random.Random, file_index: int) -> list[dict[str, Any]]:
    """A few Services and slices; some slices name a Service of another file, some objects are
    invalid, some repeat an object of another file (a duplicate)."""
    objects: list[dict[str, Any]] = []
    for i in range(rng.randint(0, 3)):
        name = f"svc-{rng.randint(0, 7)}"
        kind = rng.random()
        if kind < 0.45:
            ports = [{"name": "http", "port": rng.choice((80, 443, 0 if rng.random() < 0.1 else 81))}]
            objects.append(service(name, "ns", clusterIP=f"172.30.0.{rng.randint(1, 9)}", ports=ports))
        elif kind < 0.9:
            eps = [endpoint(f"10.180.{file_index}.{rng.randint(1, 20)}", rng.choice(("node1", "node2")))]
            objects.append(
                endpoint_slice(
                    name, "ns", eps, ports=[{"name": "http", "port": 8080}], name=f"{name}-{file_index}-{i}"
                )
            )
        else:
            objects.append(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
            )
    return objects


def _source(name: str, objects: list[dict[str, Any]], as_json: bool) -> Source:
    if as_json:
        data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    else:
        data = to_yaml(*objects).encode() if objects else b""
    return Source(name, data)


def _full(sources: dict[str, tuple[OrderKey, Source]]) -> Any:
    ordered = [source for _, source in sorted(sources.values(), key=lambda item: item[0])]
    return compile_sources(ordered, CONFIG, None, fingerprint=True, lenient=True)


@pytest.mark.parametrize("seed", range(12))
def test_a_live_compile_equals_a_full_compile_after_every_change(seed: int) -> None:
    rng = random.Random(seed)
    files: dict[str, tuple[OrderKey, Source]] = {}
    for i in range(6):
        name = f"/m/f{i}.{'json' if i % 2 else 'yaml'}"
        files[name] = ((0, Path(name)), _source(name, _objects(rng, i), i % 2 == 1))
    live = LiveCompiler(CONFIG)
    live.load(files.values())
    for _ in range(25):
        i = rng.randrange(8)
        name = f"/m/f{i}.{'json' if i % 2 else 'yaml'}"
        change: tuple[OrderKey, Source] | None
        if name in files and rng.random() < 0.2:
            change = None
            del files[name]
        else:
            change = ((0, Path(name)), _source(name, _objects(rng, i), i % 2 == 1))
            files[name] = change
        update = live.update({name: change})
        full = _full(files)
        compiled = update.compilation
        assert [e.ref for e in compiled.services] == [e.ref for e in full.services]
        assert [e.fingerprint for e in compiled.services] == [e.fingerprint for e in full.services]
        assert compiled.plan() == full.plan()
        assert live.skipped() == full.skipped
        # What the appliers ask of it (kept up to date rather than computed per change).
        assert compiled.service_groups() == full.service_groups()
        asked = [*rng.sample(sorted(full.service_groups()), min(3, len(full.services))), "ns/none"]
        assert {name: e.fingerprint for name, e in compiled.entries_named(asked).items()} == {
            name: e.fingerprint for name, e in full.entries_named(asked).items()
        }
        assert list(compiled.entries_named(asked)) == list(full.entries_named(asked))
        if rng.random() < 0.5:
            live.settled()


def test_a_change_compiles_only_the_sources_holding_its_services(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        f"/m/f{i}.yaml": (
            (0, Path(f"/m/f{i}.yaml")),
            Source(
                f"/m/f{i}.yaml",
                to_yaml(
                    service(f"svc-{i}", "ns", clusterIP=f"172.30.0.{i + 1}"),
                    endpoint_slice(f"svc-{i}", "ns", [endpoint(f"10.180.0.{i + 1}")]),
                ).encode(),
            ),
        )
        for i in range(5)
    }
    # svc-0's slice lives in another file too.
    extra = to_yaml(endpoint_slice("svc-0", "ns", [endpoint("10.180.1.1")], name="svc-0-other"))
    files["/m/g.yaml"] = ((0, Path("/m/g.yaml")), Source("/m/g.yaml", extra.encode()))
    live = LiveCompiler(CONFIG)
    live.load(files.values())
    compiled: list[list[str]] = []
    real = compile_sources

    def spy(sources: Any, *args: Any, **kwargs: Any) -> Any:
        listed = list(sources)
        compiled.append([s.name for s in listed])
        return real(listed, *args, **kwargs)

    monkeypatch.setattr("svc2rules.agent.live.compile_sources", spy)
    changed = to_yaml(
        service("svc-3", "ns", clusterIP="172.30.0.4"),
        endpoint_slice("svc-3", "ns", [endpoint("10.180.0.99")]),
    )
    update = live.update({"/m/f3.yaml": ((0, Path("/m/f3.yaml")), Source("/m/f3.yaml", changed.encode()))})
    assert compiled == [["/m/f3.yaml"]]
    assert update.changed == {("ns", "svc-3")}
    compiled.clear()
    moved = to_yaml(
        service("svc-0", "ns", clusterIP="172.30.0.1"),
        endpoint_slice("svc-0", "ns", [endpoint("10.180.0.7")]),
    )
    live.update({"/m/f0.yaml": ((0, Path("/m/f0.yaml")), Source("/m/f0.yaml", moved.encode()))})
    # svc-0 has an object in g.yaml: both are compiled (after the changed file read alone).
    assert compiled == [["/m/f0.yaml"], ["/m/f0.yaml", "/m/g.yaml"]]


def test_unchanged_bytes_are_no_change() -> None:
    source = Source("/m/a.yaml", to_yaml(service("a", "ns")).encode())
    live = LiveCompiler(CONFIG)
    live.load([((0, Path(source.name)), source)])
    update = live.update({source.name: ((0, Path(source.name)), Source(source.name, source.data))})
    assert update.changed == set() and update.warnings == [] and not update.full
