"""Incremental compilation: read, validate and resolve only the Services whose objects changed.

The resolution of a Service depends on nothing but the Service, the EndpointSlices labelled
for it, its legacy Endpoints and the node config (resolve.plan.resolve_service). So a run
fingerprints every object, groups the objects by Service, and fingerprints each group; a
`Memo` (what earlier runs learnt, kept by the caller) answers for every group and object it
has seen, and only new or changed ones are parsed, validated and resolved again. The plan
merged from the Services' resolutions is the plan a full compile gives (property-tested).

Reading: a JSON `List` source (kubectl -o json) is read item by item (load.listing); given
where its items lay last time, only the items between those still in place at its start and at
its end are parsed, and an unchanged item the memo knows is valid is not parsed at all: its
identity (kind, namespace, name, Service label) comes from the memo. Other sources are parsed
whole (load.parse_source) and fingerprinted from their parsed data.

Validation is deterministic, so an object whose fingerprint was valid before is valid now and
is not validated again; every other object is validated fully, and the diagnostics of a run are
exactly those of a full compile (same order, same text).

The memo also keeps each object in a form it can be read back from (`encode`), so the previous
version of a changed Service can be resolved again (`IncrementalCompile.remembered`): an apply
renders what that version had loaded to take it out. Keeping objects rather than resolutions
keeps the memo cheap to write and independent of the IR.

Pure: no I/O. Where the memo lives, and when it can be trusted, is the caller's business.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic, InputError
from svc2rules.ir import Plan
from svc2rules.load import RawObject, Source, parse_source
from svc2rules.load.listing import ListIndex, ScannedList, decode_text, rescan_list, scan_list
from svc2rules.load.parse import list_item
from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import SERVICE_NAME_LABEL, EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.registry import SUPPORTED, ValidatedObjects, validate_objects
from svc2rules.model.service import Service
from svc2rules.resolve.endpoints import ServiceRef
from svc2rules.resolve.plan import (
    Resolution,
    ServiceObjects,
    ServiceResolution,
    merge,
    resolve_service,
)

Fingerprint = bytes
DIGEST_SIZE = 16
# marshal format 2 writes no back-references and no interning flags, so its bytes depend only
# on the data (types and dict order included), not on which equal strings are shared objects.
_MARSHAL_VERSION = 2
_MARSHALLED, _JSON_ITEM = b"m", b"j"

# (kind, apiVersion, namespace, name, the Service-name label or ""): what validation and
# grouping read of an object that is known to be valid.
Identity = tuple[str, str, str, str, str]
# Where a list source's items lay, and the list's kind and apiVersion.
SourceIndex = tuple[ListIndex, tuple[str, Any]]


class Memo(Protocol):
    """What earlier runs learnt, by fingerprint."""

    def identity(self, fingerprint: Fingerprint) -> Identity | None:
        """The identity of the object with this fingerprint if it passed validation before."""
        ...

    def encoded(self, fingerprint: Fingerprint) -> bytes | None:
        """The object with this fingerprint, as encode gave it (None if unknown)."""
        ...

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        """The warnings of the Service group with this fingerprint, or None if it is unknown."""
        ...

    def members(self, fingerprint: Fingerprint) -> list[RawObject] | None:
        """The objects of the Service group with this fingerprint (the Service first), or None."""
        ...

    def source_index(self, name: str) -> SourceIndex | None:
        """Where the items of a list source lay last time."""
        ...


def encode_object(data: Any) -> bytes:
    """Parsed data as bytes that are equal for equal data (types and key order included)."""
    try:
        return marshal.dumps(data, _MARSHAL_VERSION)
    except ValueError:
        # YAML can produce values marshal does not know (timestamps); they become tagged tuples,
        # which parsed manifests never contain otherwise.
        return marshal.dumps(_marshalable(data), _MARSHAL_VERSION)


def fingerprint_bytes(encoded: bytes) -> Fingerprint:
    return hashlib.blake2b(encoded, digest_size=DIGEST_SIZE).digest()


def fingerprint_object(data: Any) -> Fingerprint:
    """A digest of parsed data: equal for equal data (types and key order included)."""
    return fingerprint_bytes(encode_object(data))


def decode_object(encoded: bytes) -> dict[str, Any] | None:
    """An object kept by a memo (see IncrementalCompile.encoded), or None if unreadable."""
    try:
        if encoded[:1] == _MARSHALLED:
            data = marshal.loads(encoded[1:])
        elif encoded[:1] == _JSON_ITEM:
            context, _, text = encoded[1:].partition(b"\n")
            kind, api_version = json.loads(context)
            data = json.loads(text)
            if isinstance(data, dict):
                data = list_item(data, kind, api_version)
        else:
            return None
    except (ValueError, EOFError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _marshalable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_marshalable(k): _marshalable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marshalable(v) for v in value]
    if isinstance(value, str | bytes | int | float | bool | type(None)):
        return value
    return ("\0", type(value).__module__, type(value).__qualname__, repr(value))


def fingerprint_config(config: ProxyConfig) -> Fingerprint:
    return hashlib.blake2b(config.model_dump_json().encode(), digest_size=DIGEST_SIZE).digest()


@dataclass
class ServiceEntry:
    """One Service of the input and the objects its resolution reads."""

    ref: ServiceRef
    fingerprint: Fingerprint  # of the config and every member (source and data)
    members: tuple[int, ...]  # indices into the run's raw objects, the Service first
    resolution: ServiceResolution | None = None  # resolved in this run (None: remembered)

    @property
    def name(self) -> str:
        """`namespace/name`: how state files and messages name a Service."""
        return f"{self.ref[0]}/{self.ref[1]}"


# A list item: the list, its text, where the item lies, and what encoded() puts before it.
_Item = tuple[ScannedList, str, int, int, bytes]


@dataclass
class IncrementalCompile:
    """The result of a run: every Service (resolved now or remembered) and what to remember."""

    config: ProxyConfig
    services: list[ServiceEntry]  # in (namespace, name) order, as the plan lists them
    warnings: list[Diagnostic]  # exactly those of a full compile, in the same order
    raw: Sequence[RawObject]  # an unparsed object's data holds its identity only
    fingerprints: list[Fingerprint]  # of each raw object
    valid: list[int]  # indices of the valid objects
    identities: dict[int, Identity] = field(default_factory=dict)  # of the valid objects
    indexes: dict[str, SourceIndex] = field(default_factory=dict)  # of the list sources
    models: dict[int, KubeObject] = field(default_factory=dict)
    memo: Memo | None = None
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

    def encoded(self, index: int) -> bytes:
        """An object in a form decode_object() reads back (what a memo keeps)."""
        out = self._encoded.get(index)
        if out is None:
            item = self._unparsed.get(index) or self._items.get(index)
            if item is not None:
                _, text, start, end, prefix = item
                out = prefix + text[start:end].encode("utf-8", "surrogatepass")
            else:
                out = _MARSHALLED + encode_object(self.raw[index].data)
            self._encoded[index] = out
        return out

    def resolution(self, entry: ServiceEntry) -> ServiceResolution:
        """The entry's resolution (resolved now if the memo knew it)."""
        if entry.resolution is None:
            entry.resolution = resolve_service(self._objects(entry), self.config)
        return entry.resolution

    def remembered(self, fingerprint: Fingerprint) -> ServiceResolution | None:
        """The resolution of a Service group of an earlier run (e.g. the previous version of a
        changed Service), resolved again from the objects the memo kept; None if it has none."""
        members = self.memo.members(fingerprint) if self.memo is not None else None
        if not members:
            return None
        models: list[KubeObject] = []
        for raw in members:
            model = SUPPORTED.get((str(raw.data.get("apiVersion")), str(raw.data.get("kind"))))
            if model is None:
                return None
            try:
                models.append(model.model_validate(raw.data))
            except ValueError:  # not what the memo says it is: unknown
                return None
        service, *others = models
        if not isinstance(service, Service):
            return None
        group = ServiceObjects(
            members[0].source,
            service,
            tuple(obj for obj in others if isinstance(obj, EndpointSlice)),
            next((obj for obj in others if isinstance(obj, Endpoints)), None),
        )
        return resolve_service(group, self.config)

    def plan(self) -> Plan:
        return self.resolve().plan

    def resolve(self) -> Resolution:
        resolution = merge(self.config, (self.resolution(entry) for entry in self.services))
        return Resolution(resolution.plan, list(self.warnings))

    def fresh(self) -> Iterable[ServiceEntry]:
        """The entries resolved in this run (new to the memo)."""
        return (entry for entry in self.services if entry.resolution is not None)

    def _objects(self, entry: ServiceEntry) -> ServiceObjects:
        service, *others = (self._model(i) for i in entry.members)
        assert isinstance(service, Service)
        return ServiceObjects(
            self.raw[entry.members[0]].source,
            service,
            tuple(obj for obj in others if isinstance(obj, EndpointSlice)),
            next((obj for obj in others if isinstance(obj, Endpoints)), None),
        )

    def _model(self, index: int) -> KubeObject:
        model = self.models.get(index)
        if model is None:
            # A remembered-valid object was not parsed or validated; doing so cannot fail.
            data = self.data(index)
            model = SUPPORTED[(data["apiVersion"], data["kind"])].model_validate(data)
            self.models[index] = model
        return model


def compile_incremental(
    sources: Iterable[Source], config: ProxyConfig, memo: Memo | None
) -> IncrementalCompile:
    """Read, validate and group the input; resolve the Services the memo does not know.

    Raises InputError with every problem of the input, as a full compile does.
    """
    compiled = IncrementalCompile(config, [], [], [], [], [], memo=memo)
    raw: list[RawObject] = []
    fingerprints = compiled.fingerprints
    identities = compiled.identities
    errors: list[Diagnostic] = []
    trusted: set[int] = set()
    identity_of = memo.identity if memo is not None else (lambda _: None)
    for source in sources:
        scanned, text = _scan(source, memo)
        if scanned is None or text is None:
            objects, problems = parse_source(source.name, source.data)
            errors.extend(problems)
            for obj in objects:
                compiled._encoded[len(raw)] = encoded = _MARSHALLED + encode_object(obj.data)
                fingerprints.append(fingerprint_bytes(encoded))
                raw.append(obj)
            continue
        compiled.indexes[source.name] = (scanned.index, scanned.context)
        name = source.name
        unparsed = (scanned, text)
        prefix = _JSON_ITEM + json.dumps(list(scanned.context)).encode() + b"\n"
        for start, end, digest, data in scanned.items:
            index = len(raw)
            fingerprints.append(digest)
            known = identity_of(digest)
            if known is not None:
                trusted.add(index)
                identities[index] = known
                if data is None:
                    # Unchanged and valid: only its identity is read (validation, grouping).
                    compiled._unparsed[index] = (*unparsed, start, end, prefix)
                    raw.append(RawObject(name, _stub(known)))
                    continue
            if data is None:
                data = json.loads(text[start:end])
            compiled._items[index] = (*unparsed, start, end, prefix)
            raw.append(scanned.raw_object(name, data))
    compiled.raw = raw
    validated = validate_objects(raw, trusted)
    errors.extend(validated.errors)
    if errors:
        raise InputError(errors)
    compiled.warnings.extend(validated.warnings)
    compiled.valid = [i for i, _, _ in validated.accepted]
    compiled.models = {i: obj for i, obj, _ in validated.accepted if obj is not None}
    members_by_service, labels = _members_by_service(raw, validated)
    for i, model, (kind, namespace, name) in validated.accepted:
        if model is not None:  # (the trusted ones have theirs from the memo)
            identities[i] = (kind, model.api_version, namespace, name, labels.get(i, ""))

    config_fingerprint = fingerprint_config(config)
    source_prefix: dict[str, bytes] = {}
    resolution_warnings: list[Diagnostic] = []
    warnings_of = memo.warnings if memo is not None else (lambda _: None)
    services = compiled.services
    for ref, members in sorted(members_by_service.items()):
        # Members in a canonical order: the input order of a Service's objects changes nothing.
        parts = []
        for i in members:
            source_name = raw[i].source
            named = source_prefix.get(source_name)
            if named is None:
                named = source_prefix[source_name] = source_name.encode() + b"\0"
            parts.append(named + fingerprints[i])
        parts.sort()
        entry = ServiceEntry(ref, fingerprint_bytes(config_fingerprint + b"".join(parts)), tuple(members))
        known_warnings = warnings_of(entry.fingerprint)
        if known_warnings is None:
            entry.resolution = resolve_service(compiled._objects(entry), config)
            known_warnings = entry.resolution.warnings
        if known_warnings:
            resolution_warnings.extend(known_warnings)
        services.append(entry)
    compiled.warnings.extend(resolution_warnings)
    return compiled


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
    if label:
        metadata["labels"] = {SERVICE_NAME_LABEL: label}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def _members_by_service(
    raw: Sequence[RawObject], validated: ValidatedObjects
) -> tuple[dict[ServiceRef, list[int]], dict[int, str]]:
    """Input indices of each Service's objects, the Service first (Services absent from the
    input have no entry: their slices and Endpoints change nothing), and the Service-name label
    of each EndpointSlice."""
    services: dict[ServiceRef, int] = {}
    others: dict[ServiceRef, list[int]] = {}
    labels: dict[int, str] = {}
    slice_kind, service_kind = EndpointSlice.KIND, Service.KIND
    for index, _, (kind, namespace, name) in validated.accepted:
        # The Service an object belongs to, as resolve.plan.service_ref_of reads it from the
        # model (an EndpointSlice by its service-name label).
        if kind == service_kind:
            services[(namespace, name)] = index
            continue
        if kind == slice_kind:
            label = (raw[index].data["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
            if not label:
                continue
            labels[index] = name = label
        others.setdefault((namespace, name), []).append(index)
    return {ref: [index, *others.get(ref, ())] for ref, index in services.items()}, labels


__all__ = [
    "Fingerprint",
    "Identity",
    "IncrementalCompile",
    "Memo",
    "ServiceEntry",
    "SourceIndex",
    "compile_incremental",
    "decode_object",
    "encode_object",
    "fingerprint_object",
]
