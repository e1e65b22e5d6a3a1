"""Reading a JSON List item by item, and again after edits, gives exactly what json.loads does."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from svc2rules.load import parse_source
from svc2rules.load.listing import rescan_list, scan_list

NAME = "cluster.json"
SEPARATORS = [",", ", ", ",\n  ", " ,\n", "\n,\t"]


def item(i: int, tag: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}{tag}", "namespace": "ns"}}


@st.composite
def listings(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str]:
    """A List's items and one way of writing it (kubectl's, or less tidy)."""
    items = [item(i) for i in range(draw(st.integers(0, 6)))]
    return items, write(draw, items)


def write(draw: Callable[[SearchStrategy[Any]], Any], items: list[dict[str, Any]], kind: str = "List") -> str:
    separators = [draw(st.sampled_from(SEPARATORS)) for _ in items]
    body = "".join(
        (sep if i else "") + json.dumps(obj)
        for i, (obj, sep) in enumerate(zip(items, separators, strict=True))
    )
    head: str = draw(st.sampled_from(['{"apiVersion": "v1", "items": [', '{\n  "items":[ ', '{"items": [\n']))
    tail: str = draw(
        st.sampled_from([f'], "kind": "{kind}"}}', f'\n ],"kind":"{kind}", "metadata": {{}}}}\n'])
    )
    if '"apiVersion"' not in head:
        tail = tail.replace('"kind"', '"apiVersion": "v1", "kind"', 1)
    return head + body + tail


def objects(text: str) -> list[dict[str, Any]]:
    parsed, problems = parse_source(NAME, text.encode())
    assert problems == []
    return [obj.data for obj in parsed]


@settings(max_examples=150, deadline=None)
@given(listings())
def test_a_list_read_item_by_item_is_what_json_loads_gives(listing: tuple[list[dict[str, Any]], str]) -> None:
    items, text = listing
    scanned = scan_list(NAME, text)
    assert scanned is not None
    assert [scanned.raw_object(NAME, i.data).data for i in scanned.items if i.data is not None] == objects(
        text
    )
    assert [text[i.start : i.end] for i in scanned.items] == [json.dumps(obj) for obj in items]


@settings(max_examples=300, deadline=None)
@given(listings(), st.data())
def test_a_list_read_again_after_edits_is_what_json_loads_gives(
    listing: tuple[list[dict[str, Any]], str], data: st.DataObject
) -> None:
    items, text = listing
    first = scan_list(NAME, text)
    assert first is not None
    edited = list(items)
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, len(edited)))
        action = data.draw(st.sampled_from(["insert", "delete", "change"]))
        if action == "insert":
            edited.insert(where, item(100 + where, "new"))
        elif edited and where < len(edited):
            if action == "delete":
                del edited[where]
            else:
                edited[where] = item(where, "changed")
    new_text = write(data.draw, edited) if data.draw(st.booleans()) else _same_layout(text, items, edited)
    again = rescan_list(NAME, new_text, first.index, first.context)
    event(f"read again incrementally: {again is not None}")
    if again is None:
        return  # read the ordinary way: nothing to compare
    parsed = [
        again.raw_object(NAME, i.data if i.data is not None else json.loads(new_text[i.start : i.end])).data
        for i in again.items
    ]
    assert parsed == objects(new_text)
    full = scan_list(NAME, new_text)
    assert full is not None
    assert again.index == full.index
    # Only byte-identical items are taken as unchanged.
    for i in again.items:
        if i.data is None:
            assert new_text[i.start : i.end] in text


def _same_layout(text: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """`text` with its items replaced, the head, separators and tail kept as they were."""
    scanned = scan_list(NAME, text)
    assert scanned is not None
    head = text[: scanned.index.items_open]
    tail = text[scanned.index.items_close :]
    return head + " , ".join(json.dumps(obj) for obj in after) + tail


def test_what_is_not_a_plain_list_is_left_to_the_ordinary_reader() -> None:
    assert scan_list(NAME, json.dumps(item(1))) is None  # one object
    assert scan_list(NAME, '{"kind": "List", "items": [1, 2]}') is None  # not objects
    assert scan_list(NAME, '{"kind": "List", "items": [{}], "items": []}') is None  # twice
    assert scan_list(NAME, '{"kind": "List", "items": [{},]}') is None  # not JSON
    assert scan_list(NAME, '{"kind": "List", "items": [{"a": "&x *x"}]}') is None  # maybe YAML aliases
    assert scan_list("c.yaml", "kind: List\nitems: []\n") is None
    empty = scan_list(NAME, '{"kind": "List", "items": []}')
    assert empty is not None and empty.items == []


def test_a_typed_list_lends_its_kind_to_items_without_one() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "ServiceList", "items": [{"metadata": {"name": "a"}}]})
    scanned = scan_list(NAME, text)
    assert scanned is not None
    assert [scanned.raw_object(NAME, i.data).data for i in scanned.items if i.data is not None] == objects(
        text
    )


def test_a_changed_head_or_tail_reads_the_list_again_whole() -> None:
    items = [item(i) for i in range(3)]
    text = json.dumps({"apiVersion": "v1", "items": items, "kind": "List"})
    first = scan_list(NAME, text)
    assert first is not None
    typed = json.dumps({"apiVersion": "v1", "items": items, "kind": "ServiceList"})
    assert rescan_list(NAME, typed, first.index, first.context) is None
    one_changed = text.replace('"s1"', '"s9"')
    again = rescan_list(NAME, one_changed, first.index, first.context)
    assert again is not None
    assert [i.data is None for i in again.items] == [True, False, True]


def test_a_key_set_twice_or_a_huge_integer_is_left_to_the_ordinary_reader_which_reports_it() -> None:
    items = [item(i) for i in range(3)]
    text = json.dumps({"apiVersion": "v1", "items": items, "kind": "List"})
    first = scan_list(NAME, text)
    assert first is not None
    duplicated = text.replace('"namespace": "ns"}', '"namespace": "ns", "name": "x"}', 1)
    huge = text.replace('"namespace": "ns"}', '"namespace": "ns", "port": ' + "9" * 5000 + "}", 1)
    top_level = text.replace('"kind": "List"', '"kind": "List", "kind": "ServiceList"')
    for changed in (duplicated, huge, top_level):
        assert scan_list(NAME, changed) is None
        assert rescan_list(NAME, changed, first.index, first.context) is None
    assert [str(p) for p in parse_source(NAME, duplicated.encode())[1]] == [
        f'{NAME}: Service ns/x: metadata.name: Duplicate value: "name": a key may appear once in an object'
    ]
    assert [str(p) for p in parse_source(NAME, top_level.encode())[1]] == [
        f'{NAME}: ServiceList <list>: kind: Duplicate value: "kind": a key may appear once in an object'
    ]
