"""The one compile path: sources and node config -> the plan, by Service, and what to remember.

    read (load) -> validate (model) -> group by Service -> resolve each Service (resolve) -> merge

The resolution of a Service depends on nothing but the Service, the EndpointSlices labelled
for it, its legacy Endpoints and the node config (resolve.plan.resolve_service). A full compile
resolves every Service. Given a `Memo` (what earlier runs learnt, kept by the caller), a run
fingerprints every object and each Service group (the config and the group's objects), and only
the objects and Services the memo does not know are parsed, validated and resolved again: an
object whose fingerprint was valid before is valid now (validation is deterministic). Either
way the plan and the diagnostics (same order, same text) are those of a full compile
(property-tested).

Fingerprinting costs time, so it runs only with a memo to consult or when the caller asks for
the fingerprints (an apply records each Service's, a memo learns from them).

The memo also keeps each object in a form it can be read back from, so the previous version of
a changed Service can be resolved again (`Compilation.remembered`): an apply renders what that
version had loaded to take it out. Keeping objects rather than resolutions keeps the memo cheap
to write and independent of the IR.

Pure: no I/O. Where the memo lives, and when it can be trusted, is the caller's business
(compile.cache keeps apply's in the state dir).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from svc2rules.compile.fingerprint import Fingerprint, fingerprint_bytes, fingerprint_config
from svc2rules.compile.grouping import group_members, grouping_key, service_objects, summaries
from svc2rules.compile.memo import Memo
from svc2rules.compile.read import InputObjects, read_fingerprinted, read_whole
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic, InputError
from svc2rules.ir import Plan
from svc2rules.load import Source
from svc2rules.model.meta import KubeObject
from svc2rules.model.registry import SUPPORTED, ValidatedObjects, validate_objects
from svc2rules.model.service import Service
from svc2rules.model.servicecidr import ServiceCIDR
from svc2rules.resolve.endpoints import ServiceRef
from svc2rules.resolve.plan import Resolution, ServiceObjects, ServiceResolution, merge, resolve_service
from svc2rules.resolve.service_cidrs import service_cidrs


@dataclass(slots=True)
class ServiceEntry:
    """One Service of the input and the objects its resolution reads."""

    ref: ServiceRef
    source: str  # the Service's
    members: tuple[int, ...]  # indices into the run's objects, the Service first
    _fingerprint: Fingerprint | None  # None when the compile did not fingerprint
    resolution: ServiceResolution | None = None  # resolved in this run (None: the memo knew it)

    @property
    def fingerprint(self) -> Fingerprint:
        """Of the config and every member (source and data): equal, the Service resolves equal."""
        if self._fingerprint is None:
            raise ValueError(f"{self.name}: compiled without fingerprints")
        return self._fingerprint

    @property
    def name(self) -> str:
        """`namespace/name`: how state files and messages name a Service."""
        return f"{self.ref[0]}/{self.ref[1]}"


@dataclass
class Compilation:
    """The result of a compile: every Service (resolved now or known to the memo), the
    diagnostics, and (fingerprinted) the objects read, which a memo learns from."""

    config: ProxyConfig
    services: list[ServiceEntry]  # in (namespace, name) order, as the plan lists them
    warnings: list[Diagnostic]  # exactly those of a full compile, in the same order
    objects: InputObjects | None = None  # kept when fingerprinted
    memo: Memo | None = None
    # A lenient compile's problems: every object (or source) they concern was left out.
    skipped: list[Diagnostic] = field(default_factory=list)
    # The lines (also at the end of `warnings`) that say where endpoints came from when it is
    # not the input's slices: Services derived from Pods, Services with nothing to go by.
    summaries: list[Diagnostic] = field(default_factory=list)
    # Every valid object's model, in input order (kept when asked: `explain` reads the Pods).
    models: list[KubeObject] = field(default_factory=list)
    # The plan's service CIDRs: the config's and the input's ServiceCIDR objects' (None: a
    # compilation that did not read the objects has the config's alone).
    service_cidrs: tuple[str, ...] | None = None

    def plan(self) -> Plan:
        return self.resolve().plan

    def resolve(self) -> Resolution:
        resolution = merge(
            self.config, (self.resolution(entry) for entry in self.services), self.plan_service_cidrs()
        )
        return Resolution(resolution.plan, list(self.warnings))

    def plan_service_cidrs(self) -> tuple[str, ...]:
        if self.service_cidrs is None:
            return service_cidrs(self.config, ())
        return self.service_cidrs

    def resolution(self, entry: ServiceEntry) -> ServiceResolution:
        """The entry's resolution (resolved now if the memo knew it)."""
        if entry.resolution is None:
            assert self.objects is not None  # only a memo leaves a Service unresolved
            entry.resolution = resolve_service(_group(self.objects, entry), self.config)
        return entry.resolution

    def service_groups(self) -> dict[str, str]:
        """`namespace/name` -> group fingerprint (hex) of every Service: what an applier's state
        records per Service to plan the next change Service by Service. A compile kept in
        memory (agent.live) answers without a pass over every Service."""
        return {entry.name: entry.fingerprint.hex() for entry in self.services}

    def entries_named(self, names: Iterable[str]) -> dict[str, ServiceEntry]:
        """The entries of these Services (`namespace/name`) that the input has, in that order."""
        wanted = list(names)
        asked = set(wanted)
        found = {entry.name: entry for entry in self.services if entry.name in asked}
        return {name: found[name] for name in wanted if name in found}

    def fresh(self) -> Iterator[ServiceEntry]:
        """The entries resolved in this run (new to the memo)."""
        return (entry for entry in self.services if entry.resolution is not None)

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
        return resolve_service(service_objects(members[0].source, service, others), self.config)


def compile_sources(
    sources: Iterable[Source],
    config: ProxyConfig,
    memo: Memo | None = None,
    *,
    fingerprint: bool = False,
    lenient: bool = False,
    keep_models: bool = False,
) -> Compilation:
    """Read, validate and group the input, and resolve every Service the memo does not know
    (without a memo: every Service). With a memo or `fingerprint`, every object and Service
    gets its fingerprint and the result keeps what a memo learns.

    Raises InputError with every problem of the input; `lenient` instead leaves out what they
    concern (an invalid object, an unreadable source) and lists them in `skipped`.
    `keep_models`: the result keeps every valid object's model (`models`).
    """
    fingerprinted = fingerprint or memo is not None
    read = read_fingerprinted(sources, memo) if fingerprinted else read_whole(sources)
    validated = validate_input(read, lenient=lenient)
    if not fingerprinted:
        # Nothing reads the parsed data again (grouping and resolution read the models): it
        # goes now, so the peak memory is that of validating or of resolving, not of both.
        read.drop_data()
    groups = group_members(read, validated)
    if fingerprinted:
        read.valid = [i for i, _, _ in validated.accepted]
        for i, model, (kind, namespace, name) in validated.accepted:
            if model is not None:  # (the trusted ones have theirs from the memo)
                read.identities[i] = (kind, model.api_version, namespace, name, grouping_key(model))
    read.models = {i: obj for i, obj, _ in validated.accepted if obj is not None}
    group_fingerprint = _GroupFingerprints(config, read) if fingerprinted else None
    compiled = Compilation(config, [], validated.warnings, read if fingerprinted else None, memo)
    compiled.service_cidrs = service_cidrs(
        config, (read.model(i) for i, _, (kind, _, _) in validated.accepted if kind == ServiceCIDR.KIND)
    )
    if lenient:
        compiled.skipped = read.errors + validated.errors
    services = compiled.services
    for ref, (source, members) in sorted(groups.members.items()):
        digest = group_fingerprint(members) if group_fingerprint is not None else None
        services.append(ServiceEntry(ref, source, tuple(members), digest))
    warnings_of = memo.warnings if memo is not None else None
    resolution_warnings: list[Diagnostic] = []
    for entry in services:
        known_warnings = warnings_of(entry.fingerprint) if warnings_of is not None else None
        if known_warnings is None:
            entry.resolution = resolve_service(_group(read, entry), config)
            known_warnings = entry.resolution.warnings
        if known_warnings:
            resolution_warnings.extend(known_warnings)
    compiled.warnings.extend(resolution_warnings)
    if keep_models:
        compiled.models = [read.model(i) for i, _, _ in validated.accepted]
    compiled.summaries = summaries(groups)
    compiled.warnings.extend(compiled.summaries)
    return compiled


def validate_input(read: InputObjects, *, lenient: bool = False) -> ValidatedObjects:
    """Validate the objects read (not those the memo knows valid); raise InputError with every
    problem of the input (reading's first, as a full compile reports them). `lenient`: the
    invalid objects are only left out (validation accepts the valid ones either way)."""
    validated = validate_objects(read.raw, read.trusted)
    errors = read.errors + validated.errors
    if errors and not lenient:
        raise InputError(errors)
    return validated


class _GroupFingerprints:
    """The fingerprint of a Service group: the config's and each member's (source and data),
    the members in a canonical order (the input order of a Service's objects changes nothing)."""

    def __init__(self, config: ProxyConfig, read: InputObjects) -> None:
        self.config = fingerprint_config(config)
        self.read = read
        self.source_prefix: dict[str, bytes] = {}

    def __call__(self, members: Sequence[int]) -> Fingerprint:
        sources, fingerprints, source_prefix = self.read.sources, self.read.fingerprints, self.source_prefix
        parts = []
        for i in members:
            source_name = sources[i]
            named = source_prefix.get(source_name)
            if named is None:
                named = source_prefix[source_name] = source_name.encode() + b"\0"
            parts.append(named + fingerprints[i])
        parts.sort()
        return fingerprint_bytes(self.config + b"".join(parts))


def _group(read: InputObjects, entry: ServiceEntry) -> ServiceObjects:
    model = read.model
    service = model(entry.members[0])
    assert isinstance(service, Service)
    return service_objects(entry.source, service, [model(i) for i in entry.members[1:]])
