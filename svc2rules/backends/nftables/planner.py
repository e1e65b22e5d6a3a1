"""The smallest write from the state to the desired table (pure: no host access).

* Anything in the skeleton changed (the table, a declaration, a chain's rules), or the state is
  not trusted: the whole table, replaced in one transaction (`nft -f` of the whole-table
  script), the marker set added in the same script.
* Otherwise: element edits, plus whole sets, maps and chains that come or go (a new
  endpoint-count group is one map and one chain), in one transaction ordered so that nothing
  is deleted while referred to, nor referred to before it exists:

      marker replaced -> stale elements deleted -> unused chains deleted -> unused sets and
      maps deleted -> new sets and maps -> new chains (their rules name the maps) -> new
      elements (they name the chains)

  The marker set is replaced in that same script: the kernel commits the batch whole, so the
  new generation is never visible without every edit that goes with it, nor the edits without
  the new generation.
"""

from __future__ import annotations

from typing import cast

from svc2rules.backends.applier import ChangeKind
from svc2rules.backends.nftables.model import (
    MARKER_SET,
    Desired,
    Elements,
    NftablesChange,
    NftablesState,
    marker,
)
from svc2rules.syntax.nftables import Chain, Element, Kind, Set, Transaction, Writer

NAME = "nftables"


def plan(
    old: NftablesState | None, trusted: bool, desired: Desired, generation: str, writer: Writer
) -> NftablesChange:
    old_blocks: dict[str, str] = (old or {}).get("blocks", {})
    if desired.skeleton is not None:
        header, blocks = desired.skeleton.header, desired.skeleton.blocks
    else:  # planned per Service: the skeleton is unchanged
        assert old is not None
        header, blocks = old["header"], old_blocks
    new_state = cast(
        NftablesState,
        {
            "backend": NAME,
            "generation": generation,
            "table": desired.table_name,
            "header": header,
            "blocks": blocks,
            "elements": desired.elements,
            "udp": desired.udp,
            **(desired.by_service or {}),
        },
    )
    if (
        not trusted
        or old is None
        or old.get("table") != desired.table_name
        or old.get("header") != header
        or any(old_blocks[name] != digest for name, digest in blocks.items() if name in old_blocks)
    ):
        return _full(desired, generation, new_state, writer)
    return _incremental(old, desired, generation, new_state, writer)


def _full(desired: Desired, generation: str, new_state: NftablesState, writer: Writer) -> NftablesChange:
    assert desired.table is not None
    tx = writer.transaction()
    tx.add(marker(generation))
    payload = desired.text() + tx.text()
    count = sum(len(e) for e in desired.elements.values())
    return NftablesChange(
        ChangeKind.FULL,
        payload,
        f"full: table {desired.table_name} replaced ({count} elements)",
        new_state,
        desired,
    )


def _split(block: str) -> tuple[Kind, str]:
    kind, name = block.split(" ", 1)
    return cast(Kind, kind), name


def _incremental(
    old: NftablesState, desired: Desired, generation: str, new_state: NftablesState, writer: Writer
) -> NftablesChange:
    blocks = new_state["blocks"]
    old_blocks = old.get("blocks", {})
    gone_blocks = sorted(name for name in old_blocks if name not in blocks)
    new_blocks = [name for name in blocks if name not in old_blocks]
    gone_collections = {name for kind, name in map(_split, gone_blocks) if kind != "chain"}
    deletes: list[tuple[str, list[str]]] = []
    adds: list[tuple[str, list[Element]]] = []
    old_elements: Elements = old.get("elements", {})
    touched = desired.touched
    names = sorted(touched) if touched is not None else sorted(set(old_elements) | set(desired.elements))
    for name in names:
        before = old_elements.get(name, {})
        after = desired.elements.get(name, {})
        if touched is not None:
            keys = list(dict.fromkeys(touched[name]))
            gone = [k for k in keys if k in before and after.get(k) != before[k]]
            new = [(k, *after[k]) for k in keys if k in after and before.get(k) != after[k]]
        else:
            gone = [k for k, data in before.items() if after.get(k) != data]
            new = [(k, *data) for k, data in after.items() if before.get(k) != data]
        if gone and name not in gone_collections:
            deletes.append((name, gone))
        if new:
            adds.append((name, new))
    if not deletes and not adds and not gone_blocks and not new_blocks:
        return NftablesChange(ChangeKind.NONE, "", "no changes", None, state_update=desired.by_service)

    tx: Transaction = writer.transaction()
    tx.delete("set", MARKER_SET)
    tx.add(marker(generation))
    for name, keys in deletes:
        tx.delete_elements(name, keys)
    for kind, name in map(_split, gone_blocks):
        if kind == "chain":
            tx.delete(kind, name)
    for kind, name in map(_split, gone_blocks):
        if kind != "chain":
            tx.delete(kind, name)
    if new_blocks:
        assert desired.skeleton is not None  # per Service, no block comes or goes
        objects = [desired.skeleton.objects[name] for name in new_blocks]
        tx.declare(
            [obj for obj in objects if isinstance(obj, Set)]
            + [obj for obj in objects if isinstance(obj, Chain)]
        )
    for name, elements in adds:
        tx.add_elements(name, elements)
    deleted = sum(len(keys) for _, keys in deletes)
    added = sum(len(elements) for _, elements in adds)
    summary = f"incremental: {deleted} element(s) deleted, {added} element(s) added"
    if gone_blocks or new_blocks:
        summary += f", {len(new_blocks)} set/map/chain(s) added, {len(gone_blocks)} removed"
    return NftablesChange(ChangeKind.INCREMENTAL, tx.text(), summary, new_state, desired)
