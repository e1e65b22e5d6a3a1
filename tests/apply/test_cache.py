"""The compile cache and the state's bulk log: what they remember comes back, and a damaged,
stale or foreign cache is ignored (the run compiles everything and gets the same result)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.api import build_plan
from svc2rules.apply import cache as cache_module
from svc2rules.apply.cache import CompileCache, cache_path
from svc2rules.apply.state import StateStore
from svc2rules.config import ProxyConfig
from svc2rules.errors import InputError
from svc2rules.load import Source
from svc2rules.resolve.incremental import compile_incremental

from .helpers import synthetic_cluster

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def sources(text: str) -> list[Source]:
    return [Source("cluster.json", text.encode())]


def remembered(tmp_path: Path, text: str) -> CompileCache:
    cache = CompileCache.load(cache_path(tmp_path, "iptables"))
    cache.save(compile_incremental(sources(text), CONFIG, cache))
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
    compiled = compile_incremental(sources(changed), CONFIG, cache)
    assert [e.name for e in compiled.fresh()] == ["ns-00/svc-00000"]
    assert compiled.plan() == build_plan(sources(changed), CONFIG).plan
    # The previous version of the changed Service is known exactly.
    previous = next(
        e for e in compile_incremental(sources(text), CONFIG, None).services if e.name == "ns-00/svc-00000"
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
    compiled = compile_incremental(sources(changed), CONFIG, cache)
    assert compiled.plan() == build_plan(sources(changed), CONFIG).plan
    if which == "index":
        assert cache.note is not None and "ignored" in cache.note
        assert len(list(compiled.fresh())) == 30
    # Damaged objects: the previous versions cannot be read back, so an apply renders the
    # whole plan; nothing is ever taken from them unchecked.
    for entry in compile_incremental(sources(text), CONFIG, None).services:
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
    assert list(compile_incremental(sources(text), CONFIG, cache).fresh()) == []
    assert all(cache.encoded(fingerprint) is not None for fingerprint in cache.objects)


def test_a_cache_from_another_svc2rules_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = synthetic_cluster(10, 2)
    remembered(tmp_path, text)
    monkeypatch.setattr(cache_module, "code_identity", lambda: "another version")
    cache = CompileCache.load(cache_path(tmp_path, "iptables"))
    assert cache.note is not None and "another svc2rules" in cache.note
    assert len(list(compile_incremental(sources(text), CONFIG, cache).fresh())) == 10


def test_a_cache_others_may_write_is_not_believed(tmp_path: Path) -> None:
    text = synthetic_cluster(10, 2)
    remembered(tmp_path, text)
    index = cache_path(tmp_path, "iptables")
    os.chmod(index, 0o666)
    cache = CompileCache.load(index)
    assert cache.note is not None and "writable by others" in cache.note
    assert len(list(compile_incremental(sources(text), CONFIG, cache).fresh())) == 10
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
        compile_incremental(sources(bad), CONFIG, cache)
    with pytest.raises(InputError) as cold:
        build_plan(sources(bad), CONFIG)
    assert [str(d) for d in warm.value.diagnostics] == [str(d) for d in cold.value.diagnostics]
    assert len(warm.value.diagnostics) >= 3


# -- the state's bulk log --------------------------------------------------------------------------


BULK = ("tables", "groups")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from(["x", "y", "z", ""])),
        min_size=1,
        max_size=12,
    )
)
def test_each_committed_state_reads_back_exactly(states: list[dict[str, str]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp), "iptables", BULK)
        for i, chains in enumerate(states):
            old = store.load()
            if old is not None:
                complete = store.complete(old)
                assert complete is not None
                # The applier hands over new tables built from the old ones.
                tables = dict(complete["tables"])
                tables["nat"] = dict(chains)
            else:
                tables = {"nat": dict(chains), "filter": {"k": "v"}}
            store.write_pending({"generation": str(i), "tables": tables, "groups": {"n": str(i)}})
            store.commit_pending()
            fresh = StateStore(Path(tmp), "iptables", BULK)
            back = fresh.complete(fresh.load() or {})
            assert back is not None
            assert back["tables"] == tables and back["groups"] == {"n": str(i)}
        # The log is started afresh now and then; old files are removed.
        assert len(list(Path(tmp).glob("*.bulk"))) == 1


def test_a_change_appends_a_small_record(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "nftables", ("elements",))
    elements = {"big": {f"k{i}": f"element {i}" for i in range(20000)}}
    store.write_pending({"generation": "1", "elements": elements})
    store.commit_pending()
    size = next(tmp_path.glob("*.bulk")).stat().st_size
    complete = store.complete(store.load() or {})
    assert complete is not None
    big = dict(complete["elements"]["big"])
    big["k7"] = "changed"
    del big["k8"]
    store.write_pending({"generation": "2", "elements": {"big": big}}, {"elements": {"big": ["k7", "k8"]}})
    store.commit_pending()
    grown = next(tmp_path.glob("*.bulk")).stat().st_size - size
    assert 0 < grown < 200
    back = StateStore(tmp_path, "nftables", ("elements",))
    assert (back.complete(back.load() or {}) or {})["elements"] == {"big": big}


def test_a_record_no_state_names_is_overwritten(tmp_path: Path) -> None:
    """A run that wrote its pending state and died before committing leaves a record after the
    committed ones: the next run's record replaces it, and the committed state is intact."""
    store = StateStore(tmp_path, "iptables", BULK)
    store.write_pending({"generation": "1", "tables": {"nat": {"a": "1"}}, "groups": {}})
    store.commit_pending()
    base = store.complete(store.load() or {})
    assert base is not None
    store.write_pending({"generation": "2", "tables": {"nat": {"a": "2"}}, "groups": {}})
    store.drop_pending()  # the kernel refused it
    assert (store.complete(store.load() or {}) or {})["tables"] == {"nat": {"a": "1"}}
    store.write_pending({"generation": "3", "tables": {"nat": {"a": "3", "b": "x"}}, "groups": {}})
    store.commit_pending()
    back = StateStore(tmp_path, "iptables", BULK)
    assert (back.complete(back.load() or {}) or {})["tables"] == {"nat": {"a": "3", "b": "x"}}


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_bulk_file_makes_the_state_unknown(tmp_path: Path, how: str) -> None:
    store = StateStore(tmp_path, "iptables", BULK)
    store.write_pending({"generation": "1", "tables": {"nat": {"a": "1"}}, "groups": {}})
    store.commit_pending()
    bulk = next(tmp_path.glob("*.bulk"))
    if how == "delete":
        bulk.unlink()
    else:
        damage(bulk, how)
    header = store.load()
    assert header is not None and header["generation"] == "1"
    assert store.complete(header) is None
