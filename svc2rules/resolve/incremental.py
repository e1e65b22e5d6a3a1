"""Incremental compilation: validate and resolve only the Services whose objects changed.

The resolution of a Service depends on nothing but the Service, the EndpointSlices labelled
for it, its legacy Endpoints and the node config (resolve.plan.resolve_service). So a run
fingerprints every object, groups the objects by Service, and fingerprints each group; a
`Memo` (what earlier runs learnt, kept by the caller) answers for every group and object it
has seen, and only new or changed ones are parsed, validated and resolved again. The plan
merged from the Services' resolutions is the plan a full compile gives (property-tested).

The memo also remembers each group's objects, so the previous version of a changed Service
can be resolved again (`IncrementalCompile.remembered`): an apply renders what that version
had loaded to take it out. Remembering objects rather than resolutions keeps the memo cheap to
write (the objects are already encoded for their fingerprints) and independent of the IR.

Validation is deterministic, so an object whose fingerprint was valid before is valid now and
is not parsed again; every other object is validated fully, and the diagnostics of a run are
exactly those of a full compile (same order, same text).

Pure: no I/O. Where the memo lives, and when it can be trusted, is the caller's business.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic, InputError
from svc2rules.ir import Plan
from svc2rules.load import RawObject, Source, parse_source
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


class Memo(Protocol):
    """What earlier runs learnt, by fingerprint."""

    def is_valid(self, fingerprint: Fingerprint) -> bool:
        """The object with this fingerprint passed validation before."""
        ...

    def warnings(self, fingerprint: Fingerprint) -> tuple[Diagnostic, ...] | None:
        """The warnings of the Service group with this fingerprint, or None if it is unknown."""
        ...

    def members(self, fingerprint: Fingerprint) -> list[RawObject] | None:
        """The objects of the Service group with this fingerprint (the Service first), or None."""
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


@dataclass
class IncrementalCompile:
    """The result of a run: every Service (resolved now or remembered) and what to remember."""

    config: ProxyConfig
    services: list[ServiceEntry]  # in (namespace, name) order, as the plan lists them
    warnings: list[Diagnostic]  # exactly those of a full compile, in the same order
    raw: Sequence[RawObject]
    encoded: list[bytes]  # each raw object as encode_object() gives it
    fingerprints: list[Fingerprint]  # of each raw object
    valid: list[int]  # indices of the valid objects
    models: dict[int, KubeObject] = field(default_factory=dict)
    memo: Memo | None = None

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
            # A remembered-valid object skipped parsing; parsing it again cannot fail.
            data = self.raw[index].data
            model = SUPPORTED[(data["apiVersion"], data["kind"])].model_validate(data)
            self.models[index] = model
        return model


def parse_sources(sources: Iterable[Source]) -> tuple[list[RawObject], list[Diagnostic]]:
    raw: list[RawObject] = []
    errors: list[Diagnostic] = []
    for source in sources:
        objects, problems = parse_source(source.name, source.data)
        raw.extend(objects)
        errors.extend(problems)
    return raw, errors


def compile_incremental(
    sources: Iterable[Source], config: ProxyConfig, memo: Memo | None
) -> IncrementalCompile:
    """Parse, validate and group the input; resolve the Services the memo does not know.

    Raises InputError with every problem of the input, as a full compile does.
    """
    raw, errors = parse_sources(sources)
    encoded = [encode_object(obj.data) for obj in raw]
    fingerprints = [fingerprint_bytes(e) for e in encoded]
    trusted = {i for i, fp in enumerate(fingerprints) if memo.is_valid(fp)} if memo is not None else set()
    validated = validate_objects(raw, trusted)
    errors.extend(validated.errors)
    if errors:
        raise InputError(errors)
    compiled = IncrementalCompile(
        config,
        [],
        list(validated.warnings),
        raw,
        encoded,
        fingerprints,
        [i for i, _, _ in validated.accepted],
        {i: obj for i, obj, _ in validated.accepted if obj is not None},
        memo,
    )
    config_fingerprint = fingerprint_config(config)
    sources_bytes: dict[str, bytes] = {}
    resolution_warnings: list[Diagnostic] = []
    for ref, members in sorted(_members_by_service(raw, validated).items()):
        # Members in a canonical order: the input order of a Service's objects changes nothing.
        parts = []
        for i in members:
            source = raw[i].source
            encoded_source = sources_bytes.get(source)
            if encoded_source is None:
                encoded_source = sources_bytes[source] = source.encode() + b"\0"
            parts.append(encoded_source + fingerprints[i])
        parts.sort()
        entry = ServiceEntry(ref, fingerprint_bytes(config_fingerprint + b"".join(parts)), tuple(members))
        known = memo.warnings(entry.fingerprint) if memo is not None else None
        if known is None:
            entry.resolution = resolve_service(compiled._objects(entry), config)
            known = entry.resolution.warnings
        resolution_warnings.extend(known)
        compiled.services.append(entry)
    compiled.warnings.extend(resolution_warnings)
    return compiled


def _members_by_service(raw: Sequence[RawObject], validated: ValidatedObjects) -> dict[ServiceRef, list[int]]:
    """Input indices of each Service's objects, the Service first; Services absent from the
    input have no entry (their slices and Endpoints change nothing)."""
    services: dict[ServiceRef, int] = {}
    others: dict[ServiceRef, list[int]] = {}
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
            name = label
        others.setdefault((namespace, name), []).append(index)
    return {ref: [index, *others.get(ref, ())] for ref, index in services.items()}
