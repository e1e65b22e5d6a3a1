"""The state's bulk log: each committed state reads back exactly, a change appends a small
record, and a damaged or missing bulk file makes the state unknown (never wrong)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.host.state import StateStore


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[-10] ^= 0xFF
    elif how == "truncate":
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))


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
