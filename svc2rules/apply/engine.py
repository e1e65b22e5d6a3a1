"""apply / diff / cleanup, the same for every backend.

    lock -> read state (checked; + adopt or drop a pending one) -> cheap kernel check (marker;
         none: refuse names that are someone else's) -> periodic full check due? (checks.py)
         -> compile (only what changed, with the compile cache) -> plan the smallest write
         -> sysctls -> validate -> pending state -> one kernel write -> commit state
         -> compile cache -> stale UDP conntrack entries

A write that the kernel refuses leaves the host as it was and raises ApplyError naming
the kernel's message, the offending line and its Service. The engine returns what happened
as data (ApplyReport); the CLI prints it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from svc2rules import __version__
from svc2rules.apply.checks import due_note, full_check_due, now, refuse_foreign
from svc2rules.backends import RenderOptions, get_backend
from svc2rules.backends.applier import Applier, BaseState, Change, ChangeKind, IncrementalApplier
from svc2rules.compile.identity import code_identity
from svc2rules.config import ProxyConfig
from svc2rules.errors import ApplyError, Diagnostic, UsageError
from svc2rules.host import conntrack
from svc2rules.host.lock import StateLock
from svc2rules.host.runner import Runner
from svc2rules.host.state import DEFAULT_STATE_DIR, StateStore, new_generation
from svc2rules.host.system import (
    check_sysctls,
    ensure_sysctls,
    read_sysctl,
    require_net_admin,
    restore_sysctls,
)
from svc2rules.load import Source

if TYPE_CHECKING:
    from svc2rules.compile import Compilation
    from svc2rules.compile.cache import CompileCache

AnyApplier = Applier[Any, Any, Any]


@dataclass(frozen=True)
class ApplyOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    dry_run: bool = False
    sysctl: bool = True
    lock_timeout: float = 60.0
    conntrack: bool = True
    resync: bool = False  # distrust the state file: read our objects back and reload them all
    # An input without a single Service would remove every Service's rules: what a failed
    # `kubectl get ... | svc2rules apply` feeds us. Refused unless the user insists.
    allow_empty: bool = False
    # Read and write `<state-dir>/<backend>.cache`. False: the input keeps its own memo in
    # memory and compiles with fingerprints itself (`svc2rules run`'s LiveInput).
    compile_cache: bool = True
    # Seconds after which a run reads our objects back and reloads them even though the state
    # and the marker agree (drift repair, checks.py; `apply --sync-period`, DEFAULT_SYNC_PERIOD
    # unless given); None: only with `resync` (`svc2rules run` keeps its own --sync-period
    # timer and resyncs with it).
    sync_period: float | None = None
    # Check a write with the loader's test mode first even when the loader takes a write whole
    # or refuses it whole (Applier.loads_whole): the refusal then names the check and leaves
    # the sysctls untouched. `svc2rules run` skips it (one process less per change; kube-proxy
    # runs one `nft -f` per sync): a refused load leaves the host as it was all the same.
    check_whole_writes: bool = True


@dataclass
class ApplyReport:
    """What happened, for the CLI to print (stderr) and for tests/benchmarks to inspect."""

    kind: ChangeKind = ChangeKind.NONE
    summary: str = ""
    payload: str = ""
    # A dry run of a full load: the ruleset exactly as `compile` prints it with the same
    # options (the payload adds the loader's bookkeeping, such as the generation marker).
    rules: str | None = None
    written: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    conntrack_deleted: int = 0


@dataclass(frozen=True)
class ApplyInput:
    """What every engine command starts from: the manifests, the node config and the render
    options for one backend. It is compiled only when needed: not at all when it is the input
    last applied, else incrementally against the state dir's compile cache."""

    sources: list[Source]
    config: ProxyConfig
    backend: str
    options: RenderOptions[Any] = field(default_factory=RenderOptions)
    on_warnings: Callable[[list[Diagnostic]], None] = field(default=lambda _: None)
    # Leave invalid objects out (each problem goes to on_skipped) instead of refusing the input.
    skip_invalid: bool = False
    on_skipped: Callable[[list[Diagnostic]], None] = field(default=lambda _: None)

    def compile(self, cache: CompileCache | None) -> Compilation:
        # Imported here: a run whose input is unchanged stops before compiling, without
        # paying for the models and the resolver.
        from svc2rules.compile import compile_sources

        compiled = compile_sources(self.sources, self.config, cache, lenient=self.skip_invalid)
        self.on_skipped(compiled.skipped)
        self.on_warnings(compiled.warnings)
        return compiled

    def digest(self) -> str:
        """Everything the compiled rules depend on: the svc2rules version and code, the backend,
        the node config, the render options and every input file's name and bytes (by digest,
        so that an input kept in memory hashes only the files that changed)."""
        digest = hashlib.sha256()
        for part in (__version__, code_identity(), self.backend, repr(self.config), repr(self.options)):
            digest.update(part.encode() + b"\0")
        digest.update(repr(self.skip_invalid).encode() + b"\0")
        for source, data_digest in zip(self.sources, self.source_digests(), strict=True):
            digest.update(source.name.encode() + b"\0" + data_digest)
        return digest.hexdigest()

    def source_digests(self) -> list[bytes]:
        """The digest of each source's bytes, in order."""
        return [source_digest(source.data) for source in self.sources]


def source_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class EngineMemory:
    """What one long-running process (`svc2rules run`) keeps between applies: the state store
    (whose bulk log it appends to) and the complete state it committed last. That state is used
    instead of reading the state file as long as the file is the one this process wrote (same
    inode, time and size): another run's write, or a crash, makes the next apply read it again."""

    store: StateStore | None = None
    state: BaseState | None = None
    stamp: tuple[int, int, int] | None = None

    def store_for(
        self, state_dir: Path, backend: str, bulk_keys: tuple[str, ...], schema: type | None = None
    ) -> StateStore:
        store = self.store
        if store is None or store.dir != state_dir or store.backend != backend:
            store = self.store = StateStore(state_dir, backend, bulk_keys, schema)
            self.forget()
        return store

    def recall(self, store: StateStore) -> BaseState | None:
        if self.state is None or self.stamp != _stamp(store.path):
            return None
        return self.state

    def keep(self, store: StateStore, state: BaseState) -> None:
        self.state, self.stamp = state, _stamp(store.path)

    def forget(self) -> None:
        self.state, self.stamp = None, None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def applier_for(backend: str, options: RenderOptions[Any]) -> AnyApplier:
    factory = get_backend(backend).applier
    if factory is None:
        raise UsageError(f"backend {backend!r} cannot be applied to a host (compile only)")
    return factory(options)


class _Timer:
    def __init__(self, report: ApplyReport) -> None:
        self.report = report
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.report.timings[name] = self.report.timings.get(name, 0.0) + now - self.last
        self.last = now


def _trusted_state(
    applier: AnyApplier,
    runner: Runner,
    store: StateStore,
    report: ApplyReport,
    *,
    dry_run: bool,
    resync: bool = False,
    remembered: BaseState | None = None,
    sync_period: float | None = None,
) -> tuple[BaseState | None, bool, BaseState | None]:
    """The state to diff against, whether it matches the kernel, and the state file's state
    when it did but a periodic full check is due (to record the check when it writes nothing).
    A trusted state may still lack its bulk part (StateStore.complete), unless it is the
    `remembered` one (EngineMemory). A state file failing a check is unknown (said)."""
    state = remembered if remembered is not None else cast(BaseState | None, store.load())
    if remembered is None and store.problem is not None:
        report.notes.append(
            f"warning: {store.problem}: not trusted; reading our objects back from the kernel "
            "and reloading them"
        )
    pending = cast(BaseState | None, store.load_pending())
    marker = applier.marker(runner, pending or state)
    if marker is None:
        refuse_foreign(applier, runner, pending or state)
    if pending is not None:
        if marker is not None and marker == pending.get("generation"):
            # The previous run loaded its rules but died before recording them.
            if not dry_run:
                store.commit_pending()
            report.notes.append(f"adopted the state of an interrupted run (generation {marker})")
            state = pending
        elif not dry_run:
            store.drop_pending()
    if state is not None and marker is not None and marker == state.get("generation"):
        if resync:
            report.notes.append("--resync: reading our objects back from the kernel and reloading them all")
            return _live_with_udp(applier, runner, store, state), False, state
        elapsed = full_check_due(state, sync_period, now())
        if elapsed is None:
            return state, True, None
        assert sync_period is not None
        report.notes.append(due_note(elapsed, sync_period))
        return _live_with_udp(applier, runner, store, state), False, state
    if state is not None:
        report.notes.append(
            f"state file does not match the kernel (kernel generation {marker or 'none'}, "
            f"state {state.get('generation')}): reading our objects back from the kernel"
        )
    # Untrusted: read what we own from the kernel (slow but rare: first run, drift, crash).
    return _live_with_udp(applier, runner, store, state), False, None


def _live_with_udp(
    applier: AnyApplier, runner: Runner, store: StateStore, state: BaseState | None
) -> BaseState | None:
    """What we own in the kernel, with the state's knowledge of the UDP endpoints (the kernel
    does not say which endpoints conntrack entries may still point to)."""
    live: BaseState | None = applier.read_live(runner)
    if live is not None and state is not None:
        live["udp"] = (store.complete(state) or {}).get("udp", {})
    return live


def apply_plan(
    apply_input: ApplyInput,
    options: ApplyOptions,
    runner: Runner | None = None,
    memory: EngineMemory | None = None,
) -> ApplyReport:
    """Apply an input: skipped when it is the one last applied and the kernel still matches the
    state, else compiled incrementally and loaded as the smallest write. `memory` keeps the state
    between the applies of one process."""
    backend = apply_input.backend
    applier = applier_for(backend, apply_input.options)
    report = ApplyReport()
    timer = _Timer(report)
    require_net_admin()
    input_digest = apply_input.digest()
    if memory is not None:
        store = memory.store_for(options.state_dir, backend, applier.bulk_state_keys, applier.state_schema)
    else:
        store = StateStore(options.state_dir, backend, applier.bulk_state_keys, applier.state_schema)
    with StateLock(options.state_dir, options.lock_timeout) as lock:
        runner = runner or Runner(keep_fds=(lock.fd,) if lock.fd is not None else ())
        timer.lap("lock")
        remembered = memory.recall(store) if memory is not None else None
        started = now()
        old, trusted, checked_state = _trusted_state(
            applier,
            runner,
            store,
            report,
            dry_run=options.dry_run,
            resync=options.resync,
            remembered=remembered,
            sync_period=options.sync_period,
        )
        timer.lap("check")
        if (
            trusted
            and old is not None
            and old.get("input") == input_digest
            and applier.quick_check(runner, old)
        ):
            timer.lap("check")
            wanted = old.get("sysctls", {})
            if options.dry_run:
                report.notes.extend(_would_set(wanted))
            else:
                report.notes.extend(_set_sysctls(wanted, options))
            report.notes.append(
                "input unchanged since the last apply and the kernel matches it: not recompiled"
            )
            return report
        for other in sorted(options.state_dir.glob("*.json")):
            name = other.name.removesuffix(".json")
            if name != backend and not name.endswith(".pending"):
                report.notes.append(
                    f"warning: rules of backend {name} are still loaded ({other}); "
                    f"remove them with: svc2rules cleanup --backend {name}"
                )
        if trusted and old is not None and old is not remembered:
            complete = store.complete(old)
            if complete is None:
                report.notes.append(
                    f"warning: {store.problem}: not trusted; reading our objects back from the kernel "
                    "and reloading them"
                )
                old, trusted = applier.read_live(runner), False
            else:
                old = cast(BaseState, complete)
            timer.lap("state")
        generation = new_generation()
        from svc2rules.compile.cache import CompileCache, cache_path

        cache = CompileCache.load(cache_path(options.state_dir, backend)) if options.compile_cache else None
        if cache is not None and cache.note:
            report.notes.append(cache.note)
        compiled = apply_input.compile(cache)
        timer.lap("compile")
        if not compiled.services and not options.allow_empty:
            raise UsageError(no_services_refusal(apply_input.sources))
        change = _plan(applier, runner, old, trusted, compiled, generation)
        timer.lap("plan")
        wanted_sysctls = change.sysctls if change.sysctls is not None else {}
        report.kind, report.summary, report.payload = change.kind, change.summary, change.payload
        if change.new_state is not None:
            change.new_state["input"] = input_digest
            change.new_state["sysctls"] = wanted_sysctls
            # An untrusted plan read our objects back (or reloads them whole): a full check.
            last_check = (old or {}).get("checked") if trusted else started
            if last_check is not None:
                change.new_state["checked"] = last_check
        if options.dry_run:
            if change.kind == ChangeKind.FULL:
                artifact = get_backend(backend).render(compiled.plan(), apply_input.options)
                report.rules = artifact.text
                report.notes.extend(f"warning: {warning}" for warning in artifact.warnings)
            report.notes.extend(_would_set(wanted_sysctls))
            return report
        if change.kind == ChangeKind.NONE:
            report.notes.extend(_set_sysctls(wanted_sysctls, options))
            if checked_state is not None and not trusted:
                # A full check that found nothing to write: recorded, so the next is a period away.
                recorded: BaseState | None = cast(
                    BaseState,
                    {**checked_state, "input": input_digest, "sysctls": wanted_sysctls, "checked": started},
                )
                store.write_pending(cast(dict[str, Any], recorded))
                store.commit_pending()
            else:
                recorded = _record_unchanged(store, old, trusted, change, input_digest, wanted_sysctls)
            if memory is not None:
                if recorded is not None:
                    memory.keep(store, recorded)
                else:
                    memory.forget()  # the state file was not rewritten: read it next time
            if cache is not None:
                cache.save(compiled)
            timer.lap("cache")
            return report
        # Side effects only once the rules are known good: a refused ruleset leaves the
        # sysctls as they were, and a failed load puts back the ones it changed.
        check_sysctls(wanted_sysctls, allowed=options.sysctl)
        if options.check_whole_writes or not applier.loads_whole:
            applier.validate(runner, change)
        timer.lap("validate")
        assert change.new_state is not None
        previous = ensure_sysctls(wanted_sysctls, allowed=options.sysctl)
        store.write_pending(change.new_state, change.touched)
        timer.lap("state")
        try:
            applier.load(runner, change)
        except ApplyError:
            store.drop_pending()
            restore_sysctls(previous)
            if memory is not None:
                memory.forget()
            raise
        report.notes.extend(_set_notes(previous, wanted_sysctls))
        timer.lap("load")
        report.written = True
        store.commit_pending()
        if memory is not None:
            memory.keep(store, change.new_state)
        timer.lap("state")
        if cache is not None:
            cache.save(compiled)
        timer.lap("cache")
        if options.conntrack:
            _clear_stale_udp(runner, old, change.new_state, report)
            timer.lap("conntrack")
    return report


def no_services_refusal(sources: list[Source]) -> str:
    names = ", ".join(dict.fromkeys(source.name for source in sources)) or "the input"
    return (
        f"{names}: no Service objects: applying this would remove every Service's rules from this "
        "host (a failed kubectl, a folder read without -R?); nothing was changed. "
        "To remove them all, pass --allow-empty (or run svc2rules cleanup)"
    )


def _plan(
    applier: AnyApplier,
    runner: Runner,
    old: BaseState | None,
    trusted: bool,
    compiled: Compilation,
    generation: str,
) -> Change[Any, Any]:
    change: Change[Any, Any]
    if isinstance(applier, IncrementalApplier):
        change = applier.plan_compiled(runner, old, trusted, compiled, generation)
        return change
    plan = compiled.plan()
    change = applier.plan_change(runner, old, trusted, applier.desired(plan), generation)
    change.sysctls = applier.sysctls(plan)
    return change


def _clear_stale_udp(runner: Runner, old: BaseState | None, new: BaseState, report: ApplyReport) -> None:
    old_udp = old.get("udp") if old else None
    if old_udp is None:
        # Untrusted and not read back: the state file's knowledge, which by now is the state
        # just committed (reading it back would cost a bulk read to find that).
        old_udp = new.get("udp", {})
    deletions = conntrack.stale_deletions(old_udp, new.get("udp", {}))
    if not deletions:
        return
    deleted, warnings = conntrack.clear_stale(runner, deletions)
    report.conntrack_deleted = deleted
    report.notes.extend(warnings)
    if deleted:
        report.notes.append(f"conntrack: deleted {deleted} stale UDP entr{'y' if deleted == 1 else 'ies'}")


def _record_unchanged(
    store: StateStore,
    old: BaseState | None,
    trusted: bool,
    change: Change[Any, Any],
    input_digest: str | None,
    sysctls: dict[str, str],
) -> BaseState | None:
    """Same rules from a different input: remember the input (the next run skips the compile)
    and what the applier learnt about it (e.g. the Services' new fingerprints). Returns the
    state as recorded (None: the state file was not trusted, so not rewritten)."""
    if not trusted or old is None:
        return None
    update = change.state_update or {}
    if (not input_digest or old.get("input") == input_digest) and all(
        old.get(key) == value for key, value in update.items()
    ):
        return old
    recorded = cast(BaseState, {**old, **update, "input": input_digest, "sysctls": sysctls})
    store.write_pending(recorded)
    store.commit_pending()
    return recorded


def _set_sysctls(wanted: dict[str, str], options: ApplyOptions) -> list[str]:
    return _set_notes(ensure_sysctls(wanted, allowed=options.sysctl), wanted)


def _set_notes(previous: dict[str, str | None], wanted: dict[str, str]) -> list[str]:
    return [f"set sysctl {name}={wanted[name]} (was {before})" for name, before in previous.items()]


def _would_set(wanted: dict[str, str]) -> list[str]:
    return [
        f"would set sysctl {name}={value} (is {read_sysctl(name)})"
        for name, value in sorted(wanted.items())
        if read_sysctl(name) != value
    ]


def cleanup_host(
    backend: str, render_options: RenderOptions[Any], options: ApplyOptions, runner: Runner | None = None
) -> ApplyReport:
    applier = applier_for(backend, render_options)
    report = ApplyReport()
    require_net_admin()
    store = StateStore(options.state_dir, backend, applier.bulk_state_keys, applier.state_schema)
    with StateLock(options.state_dir, options.lock_timeout) as lock:
        runner = runner or Runner(keep_fds=(lock.fd,) if lock.fd is not None else ())
        state = cast(BaseState | None, store.load_pending() or store.load())
        # Only what carries our marker is removed: a table or chains of ours by name only are
        # someone else's.
        if applier.marker(runner, state) is None:
            refuse_foreign(applier, runner, state)
        change: Change[Any, Any] = applier.plan_cleanup(runner, state)
        report.kind, report.summary, report.payload = change.kind, change.summary, change.payload
        if options.dry_run or change.kind == ChangeKind.NONE:
            if not options.dry_run:
                _forget(store, options.state_dir, backend)
            return report
        applier.validate(runner, change)
        applier.load(runner, change)
        report.written = True
        _forget(store, options.state_dir, backend)
    return report


def _forget(store: StateStore, state_dir: Path, backend: str) -> None:
    """The state and the compile cache: nothing of this backend is left on the host."""
    from svc2rules.compile.cache import cache_path
    from svc2rules.compile.cache import remove as remove_cache

    store.remove()
    remove_cache(cache_path(state_dir, backend))


def diff_plan(
    apply_input: ApplyInput, options: ApplyOptions, runner: Runner | None = None
) -> tuple[str, bool]:
    """Unified diff of our owned objects, live (kernel) vs compiled, in the kernel's own spelling."""
    backend = apply_input.backend
    applier = applier_for(backend, apply_input.options)
    require_net_admin()
    desired = applier.desired(apply_input.compile(None).plan())
    with StateLock(options.state_dir, options.lock_timeout):
        runner = runner or Runner()
        state = StateStore(options.state_dir, backend, applier.bulk_state_keys, applier.state_schema).load()
        if applier.marker(runner, state) is None:
            refuse_foreign(applier, runner, state)
        live = applier.dump_live(runner)
    compiled = applier.dump_desired(runner, desired)
    lines = list(
        difflib.unified_diff(
            live.splitlines(keepends=True),
            compiled.splitlines(keepends=True),
            fromfile=f"live ({backend})",
            tofile=f"compiled ({backend})",
            n=2,
        )
    )
    return "".join(lines), bool(lines)
