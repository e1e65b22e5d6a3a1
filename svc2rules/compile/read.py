"""The first stage of a compile: every source's objects, in input order.

Without fingerprints each source is parsed whole (load.parse_source), as a full compile always
did. With fingerprints every object gets one (compile.fingerprint), and a JSON `List` source is
read item by item (load.listing): given where its items lay last time (the memo), only the items
between those still in place at its start and at its end are parsed, and an unchanged item the
memo knows is valid is not parsed at all: its identity (kind, namespace, name, Service label)
comes from the memo, and it is parsed only if its Service must be resolved again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from svc2rules.compile.fingerprint import (
    MARSHALLED,
    Fingerprint,
    encode_object,
    fingerprint_bytes,
    json_item_prefix,
)
from svc2rules.compile.memo import Identity, Members, Memo, SourceIndex
from svc2rules.errors import Diagnostic
from svc2rules.load import RawObject, Source, parse_source
from svc2rules.load.listing import ScannedList, decode_text, rescan_list, scan_list
from svc2rules.model.endpointslice import SERVICE_NAME_LABEL, EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.registry import SUPPORTED

# A list item: the list, its text, where the item lies, and what encoded() puts before it.
_Item = tuple[ScannedList, str, int, int, bytes]


@dataclass
class InputObjects:
    """The objects read from the sources, and (fingerprinted) what a memo learns of them."""

    raw: list[RawObject] = field(default_factory=list)  # an unparsed object's data: its identity
    sources: list[str] = field(default_factory=list)  # of each object (kept by drop_data)
    errors: list[Diagnostic] = field(default_factory=list)  # of reading (parse_source's)
    fingerprints: list[Fingerprint] = field(default_factory=list)  # of each object (fingerprinted)
    trusted: set[int] = field(default_factory=set)  # indices of the objects the memo knows valid
    identities: dict[int, Identity] = field(default_factory=dict)  # of the valid objects
    indexes: dict[str, SourceIndex] = field(default_factory=dict)  # of the list sources
    valid: list[int] = field(default_factory=list)  # indices of the valid objects (fingerprinted)
    models: dict[int, KubeObject] = field(default_factory=dict)  # of the objects validated
    _encoded: dict[int, bytes] = field(default_factory=dict)
    _unparsed: dict[int, _Item] = field(default_factory=dict)
    _items: dict[int, _Item] = field(default_factory=dict)

    def data(self, index: int) -> dict[str, Any]:
        """An object's data (parsing it now if it was not)."""
        unparsed = self._unparsed.get(index)
        if unparsed is None:
            return self.raw[index].data
        scanned, text, start, end, _ = unparsed
        return scanned.raw_object(self.raw[index].source, json.loads(text[start:end])).data

    def model(self, index: int) -> KubeObject:
        """A valid object's model (validating it now if the memo vouched for it)."""
        model = self.models.get(index)
        if model is None:
            # A remembered-valid object was not parsed or validated; doing so cannot fail.
            data = self.data(index)
            model = SUPPORTED[(data["apiVersion"], data["kind"])].model_validate(data)
            self.models[index] = model
        return model

    def encoded(self, index: int) -> bytes:
        """An object in a form fingerprint.decode_object() reads back (what a memo keeps)."""
        out = self._encoded.get(index)
        if out is None:
            item = self._unparsed.get(index) or self._items.get(index)
            if item is not None:
                _, text, start, end, prefix = item
                out = prefix + text[start:end].encode("utf-8", "surrogatepass")
            else:
                out = MARSHALLED + encode_object(self.raw[index].data)
            self._encoded[index] = out
        return out

    def members(self, indices: Iterable[int]) -> Members:
        """A group's objects as a memo keeps them: (source, fingerprint) each."""
        return tuple((self.sources[i], self.fingerprints[i]) for i in indices)

    def drop_data(self) -> None:
        """Forget the objects' data (not their sources), for a run that will not read it again:
        the data is as large as the models."""
        del self.raw[:]


def read_whole(sources: Iterable[Source]) -> InputObjects:
    """Every source parsed whole; no fingerprints."""
    read = InputObjects()
    for source in sources:
        objects, problems = parse_source(source.name, source.data)
        read.raw.extend(objects)
        read.sources.extend([source.name] * len(objects))
        read.errors.extend(problems)
    return read


def read_fingerprinted(sources: Iterable[Source], memo: Memo | None) -> InputObjects:
    """Every object with its fingerprint; list items the memo knows valid left unparsed."""
    read = InputObjects()
    raw, fingerprints, identities = read.raw, read.fingerprints, read.identities
    identity_of = memo.identity if memo is not None else (lambda _: None)
    for source in sources:
        scanned, text = _scan(source, memo)
        if scanned is None or text is None:
            objects, problems = parse_source(source.name, source.data)
            read.errors.extend(problems)
            for obj in objects:
                read._encoded[len(raw)] = encoded = MARSHALLED + encode_object(obj.data)
                fingerprints.append(fingerprint_bytes(encoded))
                raw.append(obj)
            read.sources.extend([source.name] * len(objects))
            continue
        read.indexes[source.name] = (scanned.index, scanned.context)
        name = source.name
        unparsed = (scanned, text)
        prefix = json_item_prefix(scanned.context)
        for start, end, digest, data in scanned.items:
            index = len(raw)
            fingerprints.append(digest)
            known = identity_of(digest)
            if known is not None:
                read.trusted.add(index)
                identities[index] = known
                if data is None:
                    # Unchanged and valid: only its identity is read (validation, grouping).
                    read._unparsed[index] = (*unparsed, start, end, prefix)
                    raw.append(RawObject(name, _stub(known)))
                    continue
            if data is None:
                data = json.loads(text[start:end])
            read._items[index] = (*unparsed, start, end, prefix)
            raw.append(scanned.raw_object(name, data))
        read.sources.extend([name] * len(scanned.items))
    return read


def _scan(source: Source, memo: Memo | None) -> tuple[ScannedList | None, str | None]:
    """A list source read item by item (again: only what changed), or None to parse it whole."""
    text = decode_text(source.data)
    if text is None:
        return None, None
    previous = memo.source_index(source.name) if memo is not None else None
    scanned = rescan_list(source.name, text, *previous) if previous is not None else None
    if scanned is None:
        scanned = scan_list(source.name, text)
    return scanned, text


def _stub(identity: Identity) -> dict[str, Any]:
    """What validation and grouping read of a known-valid object, as its data would say it."""
    kind, api_version, namespace, name, label = identity
    metadata: dict[str, Any] = {"namespace": namespace, "name": name}
    if label and kind == EndpointSlice.KIND:  # (other kinds keep grouping facts in the label)
        metadata["labels"] = {SERVICE_NAME_LABEL: label}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}
