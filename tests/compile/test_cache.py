"""The compile cache (apply's on-disk memo): what it remembers comes back, and a damaged, stale
or foreign cache is ignored (the run compiles everything and gets the same result)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from svc2rules.api import build_plan
from svc2rules.compile import cache as cache_module
from svc2rules.compile import compile_sources
from svc2rules.compile.cache import CompileCache, cache_path
from svc2rules.config import ProxyConfig
from svc2rules.errors import InputError
from svc2rules.load import Source
from tests.apply.helpers import synthetic_cluster

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def sources(text: str) -> list[Source]:
    return [Source("cluster.json", text.encode())]


def remembered(tmp_path: Path, text: str) -> CompileCache:
    cache = CompileCache.load(cache_path(tmp_path, "iptables"))
    cache.save(compile_sources(sources(text), CONFIG, cache))
    return CompileCache.load(cache_path(tmp_path, "iptables"))


def one_endpoint_moved(text: str) -> str:
    doc = json.loads(text)
    doc["items"][1]["endpoints"][0]["addresses"] = ["10.99.0.1"]
    return json.dumps(doc)


def test_a_warm_cache_resolves_only_the_changed_service(tmp_path: Path) -> None:
    text = synthetic_cluster(40, 2)
    cache = remembered(tmp_path, text)
    assert cache.note is None and len(cache.groups) == 40
    changed = one_endpoint_moved(text)
    compiled = compile_sources(sources(changed), CONFIG, cache)
    assert [e.name for e in compiled.fresh()] == ["ns-00/svc-00000"]
    assert compiled.plan() == build_plan(sources(changed), CONFIG).plan
    # The previous version of the changed Service is known exactly.
    previous = next(
        e
        for e in compile_sources(sources(text), CONFIG, fingerprint=True).services
        if e.name == "ns-00/svc-00000"
    )
    entry = next(e for e in compiled.services if e.name == "ns-00/svc-00000")
    assert compiled.remembered(previous.fingerprint) != compiled.resolution(entry)
    assert compiled.remembered(previous.fingerprint) is not None


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[-10] ^= 0xFF
    elif how == "truncate":
        del data[len(data) // 2 :]
    elif how == "garbage":
        data = bytearray(random.Random(1).randbytes(len(data)))
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "empty"])
@pytest.mark.parametrize("which", ["index", "objects"])
def test_a_damaged_cache_is_ignored_or_only_costs_time(tmp_path: Path, how: str, which: str) -> None:
    text = synthetic_cluster(30, 2)
    remembered(tmp_path, text)
    index = cache_path(tmp_path, "iptables")
    damage(index if which == "index" else index.with_name(index.name + "-objects"), how)
    cache = CompileCache.load(index)
    changed = one_endpoint_moved(text)
    compiled = compile_sources(sources(changed), CONFIG, cache)
    assert compiled.plan() == build_plan(sources(changed), CONFIG).plan
    if which == "index":
        assert cache.note is not None and "ignored" in cache.note
        assert len(list(compiled.fresh())) == 30
    # Damaged objects: the previous versions cannot be read back, so an apply renders the
    # whole plan; nothing is ever taken from them unchecked.
    for entry in compile_sources(sources(text), CONFIG, fingerprint=True).services:
        assert (
            compiled.remembered(entry.fingerprint) in (None, compiled.resolution(entry)) or which == "index"
        )
    # And the next save repairs it.
    cache.save(compiled)
    assert CompileCache.load(index).note is None


def test_a_damaged_object_in_the_log_is_repaired_when_the_log_is_rewritten(tmp_path: Path) -> None:
    """A damaged byte in an object every later input keeps: the log's rewrite must not fail on
    it run after run (the cache would stop learning); it writes the objects afresh."""
    remembered(tmp_path, synthetic_cluster(300, 2))
    log = cache_path(tmp_path, "iptables").with_name("iptables.cache-objects")
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF  # in the first Service, which every input below keeps
    log.write_bytes(bytes(data))
    for shift in range(1, 16):  # every slice changes: the log grows until it is rewritten
        text = synthetic_cluster(300, 2, shift=shift)
        cache = remembered(tmp_path, text)
    assert log.stat().st_size < 1 << 20
    assert list(compile_sources(sources(text), CONFIG, cache).fresh()) == []
    assert all(cache.encoded(fingerprint) is not None for fingerprint in cache.objects)


def test_a_cache_from_another_svc2rules_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = synthetic_cluster(10, 2)
    remembered(tmp_path, text)
    monkeypatch.setattr(cache_module, "code_identity", lambda: "another version")
    cache = CompileCache.load(cache_path(tmp_path, "iptables"))
    assert cache.note is not None and "another svc2rules" in cache.note
    assert len(list(compile_sources(sources(text), CONFIG, cache).fresh())) == 10


def test_a_cache_others_may_write_is_not_believed(tmp_path: Path) -> None:
    text = synthetic_cluster(10, 2)
    remembered(tmp_path, text)
    index = cache_path(tmp_path, "iptables")
    os.chmod(index, 0o666)
    cache = CompileCache.load(index)
    assert cache.note is not None and "writable by others" in cache.note
    assert len(list(compile_sources(sources(text), CONFIG, cache).fresh())) == 10
    # The next save writes files only we may write, which the run after believes again.
    again = remembered(tmp_path, text)
    assert again.note is None and len(again.objects) == 20
    assert index.stat().st_mode & 0o777 == 0o600


def test_invalid_objects_are_reported_as_a_cold_compile_reports_them(tmp_path: Path) -> None:
    text = synthetic_cluster(20, 2)
    cache = remembered(tmp_path, text)
    doc = json.loads(text)
    doc["items"][4]["spec"]["ports"][0]["port"] = 70000
    doc["items"][7]["endpoints"][0]["addresses"] = ["not-an-ip"]
    doc["items"].append(dict(doc["items"][0]))  # a duplicate of an unchanged, remembered object
    bad = json.dumps(doc)
    with pytest.raises(InputError) as warm:
        compile_sources(sources(bad), CONFIG, cache)
    with pytest.raises(InputError) as cold:
        build_plan(sources(bad), CONFIG)
    assert [str(d) for d in warm.value.diagnostics] == [str(d) for d in cold.value.diagnostics]
    assert len(warm.value.diagnostics) >= 3
