"""What `run` keeps between syncs: the state store it appends to and the state it committed,
trusted only while the state file is the one it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from svc2rules.apply.engine import EngineMemory
from svc2rules.backends.applier import BaseState
from svc2rules.host.state import StateStore


def _state(generation: str, elements: dict[str, Any]) -> dict[str, Any]:
    return {"backend": "nftables", "generation": generation, "elements": elements}


def test_a_store_kept_between_writes_appends_to_what_it_committed_last(tmp_path: Path) -> None:
    big = {f"key-{i}": f"value-{i}" for i in range(5000)}
    store = StateStore(tmp_path, "nftables", ("elements",))
    store.write_pending(_state("g1", big))
    store.commit_pending()
    second = {**big, "key-1": "changed"}
    store.write_pending(_state("g2", second))
    store.commit_pending()
    third = {**second, "key-2": "changed too"}
    store.write_pending(_state("g3", third))
    store.commit_pending()
    fresh = StateStore(tmp_path, "nftables", ("elements",))
    loaded = fresh.load()
    assert loaded is not None and loaded["generation"] == "g3"
    complete = fresh.complete(loaded)
    assert complete is not None and complete["elements"] == third
    # The later writes were appended as changes, not as whole copies.
    assert len(loaded["bulk"]["records"]) == 3


def test_the_memory_is_trusted_only_while_the_state_file_is_the_one_it_wrote(tmp_path: Path) -> None:
    memory = EngineMemory()
    store = memory.store_for(tmp_path, "nftables", ("elements",))
    state = cast(BaseState, _state("g1", {"a": "b"}))
    store.write_pending(state)
    store.commit_pending()
    memory.keep(store, state)
    assert memory.recall(store) is state
    assert memory.store_for(tmp_path, "nftables", ("elements",)) is store
    # Another run (a one-shot apply) writes the state file: the memory is not used again.
    other = StateStore(tmp_path, "nftables", ("elements",))
    other.write_pending(_state("g2", {"a": "c"}))
    other.commit_pending()
    assert memory.recall(store) is None
    memory.keep(store, state)
    memory.forget()
    assert memory.recall(store) is None
    # Another state directory or backend: another store, nothing remembered.
    assert memory.store_for(tmp_path / "x", "nftables", ()) is not store and memory.state is None
