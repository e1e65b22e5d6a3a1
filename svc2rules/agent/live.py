"""The input of `svc2rules run`, kept in memory and compiled as it changes.

Sources (the files of watched folders, or the objects of watch-event streams) change a few at a
time. A change is compiled by the one compile path (compile_sources, leniently, against a memo
kept in memory) over the sources it can affect: the changed ones, and every source holding an
object of a Service that a changed source holds an object of, before or after the change. Those
Services are taken from that compile; every other Service keeps its entry and its resolution.
The result is the Compilation a full compile of every source gives (tests/agent/test_live.py
checks it), at the cost of the changed sources rather than of the whole input.

Two objects of one kind and name in different sources are a duplicate, which validation
settles by input order across the whole input: while any exists, changes compile every source.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from svc2rules.apply.engine import source_digest
from svc2rules.compile import Compilation, Fingerprint, MemoryMemo, ServiceEntry, compile_sources
from svc2rules.config import ProxyConfig
from svc2rules.errors import Diagnostic
from svc2rules.load import Source
from svc2rules.model.meta import DEFAULT_NAMESPACE
from svc2rules.model.registry import SUPPORTED
from svc2rules.resolve.endpoints import ServiceRef
from svc2rules.resolve.plan import ServiceResolution

# How a source sorts in the input: sources compile in this order, as read_sources lists them.
OrderKey = tuple[Any, ...]
ObjectKey = tuple[str, str, str]  # kind, namespace, name: what validation calls a duplicate
_SLICE_KIND = "EndpointSlice"
_SERVICE_KIND = "Service"


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the compile learnt of one source."""

    source: Source
    order: OrderKey
    digest: bytes  # of the source's bytes (the engine's input digest is made of these)
    claims: frozenset[ServiceRef]  # the Services its valid objects belong to
    keys: frozenset[ObjectKey]  # of every object it holds that names a kind svc2rules reads
    fingerprints: tuple[Fingerprint, ...]  # of its valid objects
    skipped: tuple[Diagnostic, ...]  # the problems of what was left out of it


@dataclass
class LiveCompilation(Compilation):
    """A Compilation whose Services were resolved over several compiles: each resolution is
    found by its group's fingerprint."""

    resolved: dict[Fingerprint, ServiceResolution] = field(default_factory=dict)
    # The LiveCompiler's own tables, read while this compilation is the current one: the
    # applier asks for a few Services and the fingerprints of all, not for a pass over 10k.
    groups: dict[str, str] = field(default_factory=dict)
    entries: dict[ServiceRef, ServiceEntry] = field(default_factory=dict)

    def resolution(self, entry: ServiceEntry) -> ServiceResolution:
        return self.resolved[entry.fingerprint]

    def service_groups(self) -> dict[str, str]:
        return dict(self.groups)  # the state keeps it; the compiler's own goes on changing

    def entries_named(self, names: Iterable[str]) -> dict[str, ServiceEntry]:
        found = {}
        for name in names:
            namespace, _, short = name.partition("/")
            entry = self.entries.get((namespace, short))
            if entry is not None:
                found[name] = entry
        return found

    def remembered(self, fingerprint: Fingerprint) -> ServiceResolution | None:
        return self.resolved.get(fingerprint)


@dataclass
class LiveUpdate:
    """What one update changed: the Services to look at again and what to say about them."""

    compilation: LiveCompilation
    changed: set[ServiceRef]  # Services added, changed or removed
    warnings: list[Diagnostic]  # of the changed sources and Services
    skipped: list[Diagnostic]  # of the changed sources
    full: bool  # every source was compiled


class LiveCompiler:
    """The compiled input, updated by changes of whole sources (name -> source or None)."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.memo = MemoryMemo()
        self.facts: dict[str, SourceFacts] = {}
        self.ordered: list[tuple[OrderKey, str]] = []  # (order, name) of every source, sorted
        self.claimants: dict[ServiceRef, set[str]] = {}
        self.holders: dict[ObjectKey, set[str]] = {}
        self.duplicated: set[ObjectKey] = set()  # keys more than one source holds
        self.entries: dict[ServiceRef, ServiceEntry] = {}
        self.groups: dict[str, str] = {}  # `namespace/name` -> fingerprint (hex) of each entry
        self.refs: list[ServiceRef] = []  # sorted: the plan's order
        self.services: list[ServiceEntry] = []  # the entries of `refs`, in its order
        self.resolved: dict[Fingerprint, ServiceResolution] = {}
        # The groups of the last input that reached the kernel: the next plan may ask for their
        # resolution (the previous version of a changed Service), so they are kept.
        self.applied: set[Fingerprint] = set()

    # -- reading ---------------------------------------------------------------------------------

    def in_order(self) -> list[SourceFacts]:
        facts = self.facts
        return [facts[name] for _, name in self.ordered]

    def skipped(self) -> list[Diagnostic]:
        """Every problem of the current input (what was left out of it), in input order."""
        return [d for facts in self.in_order() for d in facts.skipped]

    def skipped_count(self) -> int:
        return sum(len(facts.skipped) for facts in self.facts.values())

    def compilation(self, warnings: list[Diagnostic] | None = None) -> LiveCompilation:
        """The current input as the engine plans from it (its `skipped` is left empty: the
        caller has said what was left out when it changed)."""
        return LiveCompilation(
            config=self.config,
            services=list(self.services),
            warnings=list(warnings or ()),
            memo=self.memo,
            resolved=self.resolved,
            groups=self.groups,
            entries=self.entries,
        )

    def resolution(self, ref: ServiceRef) -> ServiceResolution | None:
        entry = self.entries.get(ref)
        return None if entry is None else self.resolved[entry.fingerprint]

    # -- updating --------------------------------------------------------------------------------

    def update(self, changes: Mapping[str, tuple[OrderKey, Source] | None]) -> LiveUpdate:
        """Apply changed sources (None: removed). Unchanged bytes are no change."""
        changes = {
            name: change for name, change in changes.items() if not _same(self.facts.get(name), change)
        }
        present = {name: change for name, change in changes.items() if change is not None}
        alone = self._compile(present.values())
        new_facts = _facts_of(alone, present)
        affected: set[ServiceRef] = set()
        for name in changes:
            old = self.facts.get(name)
            if old is not None:
                affected |= old.claims
            if name in new_facts:
                affected |= new_facts[name].claims
        previous = [facts for facts in (self.facts.get(name) for name in changes) if facts is not None]
        for name in changes:
            self._forget(name)
        # Another source holding an object a changed source held: validation had left one out.
        had_duplicates = any(self._held_elsewhere(facts) for facts in previous)
        for facts in new_facts.values():
            self._learn(facts)
        if self.duplicated or had_duplicates:
            return self._rebuild(changes)
        holding = {name for ref in affected for name in self.claimants.get(ref, ())}
        subset: Compilation | None
        if holding <= present.keys() and alone is not None:
            subset = alone
        else:
            subset = self._compile(
                (facts.order, facts.source)
                for facts in (self.facts[name] for name in holding | present.keys())
            )
        found = {entry.ref: entry for entry in subset.services} if subset is not None else {}
        if subset is not None:
            self._teach(subset)
        changed = set()
        for ref in affected:
            entry, before = found.get(ref), self.entries.get(ref)
            if entry is None or subset is None:
                self._drop_entry(ref)
            else:
                self._set_entry(ref, entry, subset)
            if (before and before.fingerprint) != (entry and entry.fingerprint):
                changed.add(ref)
        warnings = _warnings_of(subset, present.keys(), changed)
        skipped = [d for name in present for d in self.facts[name].skipped]
        return LiveUpdate(self.compilation(warnings), changed, warnings, skipped, full=False)

    def load(self, sources: Iterable[tuple[OrderKey, Source]]) -> LiveUpdate:
        """Start over from these sources (the first load, or after the node config changed)."""
        listed = list(sources)
        return self._rebuild({source.name: (order, source) for order, source in listed}, replace=True)

    def settled(self) -> None:
        """The current input reached the kernel: what only older inputs needed can go."""
        self.applied = {entry.fingerprint for entry in self.entries.values()}
        live = len(self.entries)
        if len(self.resolved) > 2 * live + 1024:
            keep = self.applied
            self.resolved = {fp: r for fp, r in self.resolved.items() if fp in keep}
            self.memo.groups = {fp: g for fp, g in self.memo.groups.items() if fp in keep}
        objects = sum(len(facts.fingerprints) for facts in self.facts.values())
        if len(self.memo.objects) > 2 * objects + 1024:
            wanted = {fp for facts in self.facts.values() for fp in facts.fingerprints}
            for members in (group[1] for group in self.memo.groups.values()):
                wanted.update(fp for _, fp in members)
            self.memo.objects = {fp: o for fp, o in self.memo.objects.items() if fp in wanted}

    # -- internals -------------------------------------------------------------------------------

    def _compile(self, sources: Iterable[tuple[OrderKey, Source]]) -> Compilation | None:
        ordered = [source for _, source in sorted(sources, key=lambda item: item[0])]
        if not ordered:
            return None
        return compile_sources(ordered, self.config, self.memo, lenient=True)

    def _rebuild(
        self, changes: Mapping[str, tuple[OrderKey, Source] | None], *, replace: bool = False
    ) -> LiveUpdate:
        """Compile every source (after applying `changes`) and take every Service from it."""
        current = {} if replace else {name: (f.order, f.source) for name, f in self.facts.items()}
        for name, change in changes.items():
            if change is None:
                current.pop(name, None)
            else:
                current[name] = change
        whole = self._compile(current.values())
        before = set(self.entries)
        self.facts, self.claimants, self.holders, self.ordered = {}, {}, {}, []
        self.entries, self.refs, self.services, self.groups = {}, [], [], {}
        self.duplicated = set()
        for facts in _facts_of(whole, current).values():
            self._learn(facts)
        if whole is not None:
            self._teach(whole)
            for entry in whole.services:
                self._set_entry(entry.ref, entry, whole)
        changed = before | set(self.entries)
        names = set(changes)
        warnings = _warnings_of(whole, names, changed)
        skipped = [d for name in names if name in self.facts for d in self.facts[name].skipped]
        return LiveUpdate(self.compilation(warnings), changed, warnings, skipped, full=True)

    def _teach(self, compiled: Compilation) -> None:
        learnt = MemoryMemo.of(compiled)
        self.memo.objects.update(learnt.objects)
        self.memo.groups.update(learnt.groups)
        self.memo.sources.update(learnt.sources)

    def _set_entry(self, ref: ServiceRef, entry: ServiceEntry, compiled: Compilation) -> None:
        fingerprint = entry.fingerprint
        if fingerprint not in self.resolved:
            self.resolved[fingerprint] = compiled.resolution(entry)
        index = bisect.bisect_left(self.refs, ref)
        if ref in self.entries:
            self.services[index] = entry
        else:
            self.refs.insert(index, ref)
            self.services.insert(index, entry)
        self.entries[ref] = entry
        self.groups[entry.name] = fingerprint.hex()

    def _drop_entry(self, ref: ServiceRef) -> None:
        entry = self.entries.pop(ref, None)
        if entry is not None:
            index = bisect.bisect_left(self.refs, ref)
            del self.refs[index], self.services[index]
            del self.groups[entry.name]

    def _learn(self, facts: SourceFacts) -> None:
        name = facts.source.name
        self.facts[name] = facts
        bisect.insort(self.ordered, (facts.order, name))
        for ref in facts.claims:
            self.claimants.setdefault(ref, set()).add(name)
        for key in facts.keys:
            holders = self.holders.setdefault(key, set())
            holders.add(name)
            if len(holders) > 1:
                self.duplicated.add(key)

    def _forget(self, name: str) -> None:
        facts = self.facts.pop(name, None)
        if facts is None:
            return
        del self.ordered[bisect.bisect_left(self.ordered, (facts.order, name))]
        self.memo.sources.pop(name, None)
        for ref in facts.claims:
            _discard(self.claimants, ref, name)
        for key in facts.keys:
            _discard(self.holders, key, name)
            if len(self.holders.get(key, ())) <= 1:
                self.duplicated.discard(key)

    def _held_elsewhere(self, facts: SourceFacts) -> bool:
        return any(key in self.holders for key in facts.keys)


def _same(facts: SourceFacts | None, change: tuple[OrderKey, Source] | None) -> bool:
    if facts is None or change is None:
        return facts is None and change is None
    return facts.order == change[0] and facts.source.data == change[1].data


def _discard(table: dict[Any, set[str]], key: Any, name: str) -> None:
    names = table.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del table[key]


def _facts_of(
    compiled: Compilation | None, sources: Mapping[str, tuple[OrderKey, Source]]
) -> dict[str, SourceFacts]:
    """Per source of a compile: its claims, object keys, valid fingerprints and problems."""
    orders = sources
    claims: dict[str, set[ServiceRef]] = {name: set() for name in orders}
    keys: dict[str, set[ObjectKey]] = {name: set() for name in orders}
    fingerprints: dict[str, list[Fingerprint]] = {name: [] for name in orders}
    skipped: dict[str, list[Diagnostic]] = {name: [] for name in orders}
    if compiled is not None:
        read = compiled.objects
        assert read is not None  # a memo makes every compile fingerprint its objects
        for i in read.valid:
            source = read.sources[i]
            kind, _, namespace, name, label = read.identities[i]
            fingerprints[source].append(read.fingerprints[i])
            if kind == _SLICE_KIND:
                if label:
                    claims[source].add((namespace, label))
            else:
                claims[source].add((namespace, name))
        for i, raw in enumerate(read.raw):
            key = _object_key(raw.data)
            if key is not None:
                keys[read.sources[i]].add(key)
        for problem in compiled.skipped:
            if problem.source in skipped:
                skipped[problem.source].append(problem)
    return {
        name: SourceFacts(
            source,
            order,
            source_digest(source.data),
            frozenset(claims[name]),
            frozenset(keys[name]),
            tuple(fingerprints[name]),
            tuple(skipped[name]),
        )
        for name, (order, source) in sources.items()
    }


def _object_key(data: Any) -> ObjectKey | None:
    """The kind, namespace and name validation compares for duplicates, when the data has them."""
    if not isinstance(data, dict):
        return None
    model = SUPPORTED.get((str(data.get("apiVersion")), str(data.get("kind"))))
    metadata = data.get("metadata")
    if model is None or not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return None
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    return (model.KIND, str(namespace), metadata["name"])


def _warnings_of(
    compiled: Compilation | None, sources: Iterable[str], services: set[ServiceRef]
) -> list[Diagnostic]:
    """The warnings of a compile that concern the changed sources or Services."""
    if compiled is None:
        return []
    names = set(sources)
    services_named = {f"{namespace}/{name}" for namespace, name in services}
    return [w for w in compiled.warnings if w.source in names or (w.obj or "") in services_named]
