"""JSON `List` sources item by item, so a later run re-reads only the items that changed.

`kubectl get svc,endpointslices -A -o json` is one JSON object whose `items` array holds every
object. `scan_list` parses it one item at a time (json's own C scanner, one call per item) and
records where each item lies; the result is what json.loads gives. Given that record of an
earlier version of the file, `rescan_list` hashes the items still at their old place at the
start of the file, and those at their old place (shifted) at its end, checks that the bytes
around them are still only `,` and whitespace, and parses only what lies between: a changed
Service's objects cost what they cost, the other 10k objects one hash each.

Anything unexpected (not a List, items that are not objects, a broken array, text that might
hold YAML aliases, a key set twice, an integer too long to convert) makes the caller read the
source the ordinary way (parse.parse_source), so diagnostics are always exactly parse_source's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from svc2rules.load.parse import RawObject, list_item, looks_like_json, text_has_aliases, unique_object

DIGEST_SIZE = 16
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# As parse_source decodes: a key set twice (or an integer too long to convert) is a ValueError,
# and the source is then read the ordinary way, which reports it.
_DECODER = json.JSONDecoder(object_pairs_hook=unique_object)


@dataclass(frozen=True, slots=True)
class ListIndex:
    """Where the items of a JSON List source lie (character offsets) and what they were."""

    length: int  # of the text
    items_open: int  # just after the `[` of the items array
    items_close: int  # at its `]`
    head: bytes  # digest of text[:items_open]
    tail: bytes  # digest of text[items_close:]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    digests: tuple[bytes, ...]  # _digest() of each item, with the list's context


class ListItem(NamedTuple):
    """One item of the list: parsed, or (`data` None) known unchanged from the index given.
    (A tuple: a 10k-Service list has 20k of them, built on every run.)"""

    start: int
    end: int
    digest: bytes
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ScannedList:
    index: ListIndex
    items: list[ListItem]
    context: tuple[str, Any]  # the List's kind and apiVersion (typed lists lend them to items)

    def raw_object(self, name: str, data: dict[str, Any]) -> RawObject:
        """An item as parse.parse_source makes it an object (typed lists lend their kind)."""
        return RawObject(name, list_item(data, *self.context))


def decode_text(data: bytes) -> str | None:
    """The text parse_source would parse, or None when it reports a problem instead."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _digest(text: str, context: bytes = b"") -> bytes:
    """Of a list's head or tail, or of an item (with its list's kind and apiVersion)."""
    return hashlib.blake2b(context + text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_SIZE).digest()


def _context_bytes(kind: str, api_version: Any) -> bytes:
    return f"{kind}\0{api_version!r}\0".encode()


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None
    return match.end()


def scan_list(name: str, text: str) -> ScannedList | None:
    """Parse a JSON List item by item, or None when the text is not one we can read this way."""
    if not looks_like_json(name, text) or text_has_aliases(text):
        return None
    try:
        return _scan(text)
    except (ValueError, IndexError):
        return None


def _scan(text: str) -> ScannedList | None:
    pos = _skip(text, 0)
    if text[pos] != "{":
        return None
    members: dict[str, Any] = {}
    spans: list[tuple[int, int, dict[str, Any]]] | None = None
    items_open = items_close = -1
    pos = _skip(text, pos + 1)
    if text[pos] != "}":
        while True:
            key, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(key, str) or key in members:
                return None  # (a key set twice: parse_source reports it)
            pos = _skip(text, pos)
            if text[pos] != ":":
                return None
            pos = _skip(text, pos + 1)
            if key == "items":
                if text[pos] != "[":
                    return None  # not an array: the ordinary way
                items_open = pos + 1
                spans, pos = _scan_items(text, items_open)
                items_close = pos
                pos += 1
                members[key] = None
            else:
                members[key], pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, pos)
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
                continue
            if text[pos] != "}":
                return None
            break
    if _skip(text, pos + 1) != len(text) or spans is None:
        return None
    kind, api_version = members.get("kind"), members.get("apiVersion")
    if not isinstance(kind, str) or not kind.endswith("List"):
        return None
    context = _context_bytes(kind, api_version)
    items = [ListItem(s, e, _digest(text[s:e], context), data) for s, e, data in spans]
    index = _index(text, items_open, items_close, items)
    return ScannedList(index, items, (kind, api_version))


def _scan_items(text: str, pos: int) -> tuple[list[tuple[int, int, dict[str, Any]]], int]:
    """The items of an array whose `[` ends at pos, and the position of its `]`."""
    out: list[tuple[int, int, dict[str, Any]]] = []
    pos = _skip(text, pos)
    if text[pos] == "]":
        return out, pos
    while True:
        start = pos
        item, pos = _DECODER.raw_decode(text, pos)
        if not isinstance(item, dict):
            raise ValueError("not an object")  # parse_source words this problem
        out.append((start, pos, item))
        pos = _skip(text, pos)
        if text[pos] == "]":
            return out, pos
        if text[pos] != ",":
            raise ValueError("expected , or ]")
        pos = _skip(text, pos + 1)


def _index(text: str, items_open: int, items_close: int, items: list[ListItem]) -> ListIndex:
    return ListIndex(
        len(text),
        items_open,
        items_close,
        _digest(text[:items_open]),
        _digest(text[items_close:]),
        tuple(i.start for i in items),
        tuple(i.end for i in items),
        tuple(i.digest for i in items),
    )


def rescan_list(name: str, text: str, old: ListIndex, context: tuple[str, Any]) -> ScannedList | None:
    """The list again, parsing only the items between those unchanged at its start and at its
    end; None when the text is not the same kind of list around them (then scan it whole)."""
    if not looks_like_json(name, text) or text_has_aliases(text):
        return None
    try:
        return _rescan(text, old, context)
    except (ValueError, IndexError):
        return None


def _rescan(text: str, old: ListIndex, context: tuple[str, Any]) -> ScannedList | None:
    shift = len(text) - old.length
    close = old.items_close + shift
    if (
        close < old.items_open
        or _digest(text[: old.items_open]) != old.head
        or _digest(text[close:]) != old.tail
    ):
        return None
    context_bytes = _context_bytes(*context)
    count = len(old.starts)
    # Items still where they were, from the start...
    k = 0
    separator_start = old.items_open
    while k < count:
        start, end = old.starts[k], old.ends[k]
        if end > close or not _separator_ok(text, separator_start, start, first=k == 0):
            break
        if _digest(text[start:end], context_bytes) != old.digests[k]:
            break
        separator_start = end
        k += 1
    # ... and from the end, shifted.
    j = count
    separator_end = close
    while j > k:
        start, end = old.starts[j - 1] + shift, old.ends[j - 1] + shift
        if start < separator_start or not _separator_ok(text, end, separator_end, last=j == count):
            break
        if _digest(text[start:end], context_bytes) != old.digests[j - 1]:
            break
        separator_end = start
        j -= 1
    middle = _scan_between(text, separator_start, separator_end, first=k == 0, last=j == count)
    if middle is None:
        return None
    items = list(map(ListItem, old.starts[:k], old.ends[:k], old.digests[:k], repeat(None, k)))
    items += [ListItem(s, e, _digest(text[s:e], context_bytes), data) for s, e, data in middle]
    items += [
        ListItem(start + shift, end + shift, digest, None)
        for start, end, digest in zip(old.starts[j:], old.ends[j:], old.digests[j:], strict=True)
    ]
    index = _index(text, old.items_open, close, items)
    return ScannedList(index, items, context)


def _separator_ok(text: str, start: int, end: int, *, first: bool = False, last: bool = False) -> bool:
    """Between two items only `,` and whitespace (after `[` or before `]`: whitespace only)."""
    between = text[start:end].strip(" \t\n\r")
    return between == ("" if first or last else ",")


def _scan_between(
    text: str, start: int, end: int, *, first: bool, last: bool
) -> list[tuple[int, int, dict[str, Any]]] | None:
    """The items in text[start:end], which follows an item (or `[` when first) and precedes an
    item (or `]` when last); None unless that is exactly what it holds."""
    out: list[tuple[int, int, dict[str, Any]]] = []
    pos = _skip(text, start)
    expect_item = first
    while True:
        if not expect_item:
            if pos == end and last:
                return out
            if text[pos] != ",":
                return None
            pos = _skip(text, pos + 1)
            if pos == end and not last:
                return out
            expect_item = True
            continue
        if pos == end:
            # Nothing (more) between `[` and the next kept item, or an empty list.
            return out if (first and not out) else None
        if pos > end:
            return None
        item_start = pos
        item, pos = _DECODER.raw_decode(text, pos)
        if not isinstance(item, dict) or pos > end:
            return None
        out.append((item_start, pos, item))
        pos = _skip(text, pos)
        expect_item = False
