"""apply / diff / cleanup, the same for every backend.

    lock -> read state (+ adopt or drop a pending one) -> cheap kernel check (marker)
         -> compile (only what changed, with the compile cache) -> plan the smallest write
         -> sysctls -> validate -> pending state -> one kernel write -> commit state
         -> compile cache -> stale UDP conntrack entries

A write that the kernel refuses leaves the host as it was and raises ApplyError naming
the kernel's message, the offending line and its Service.
"""

from __future__ import annotations

import difflib
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svc2rules import __version__
from svc2rules.apply import conntrack
from svc2rules.apply.base import Applier, Change, CompiledApplier
from svc2rules.apply.cache import CompileCache, cache_path, code_identity
from svc2rules.apply.cache import remove as remove_cache
from svc2rules.apply.host import ensure_sysctls, read_sysctl, require_net_admin
from svc2rules.apply.lock import StateLock
from svc2rules.apply.runner import Runner
from svc2rules.apply.state import DEFAULT_STATE_DIR, StateStore, new_generation
from svc2rules.backends import RenderOptions, get_backend
from svc2rules.config import ProxyConfig
from svc2rules.errors import ApplyError, Diagnostic, UsageError
from svc2rules.ir import Plan
from svc2rules.load import Source
from svc2rules.resolve.incremental import IncrementalCompile, compile_incremental


@dataclass(frozen=True)
class ApplyOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    dry_run: bool = False
    sysctl: bool = True
    lock_timeout: float = 60.0
    conntrack: bool = True
    resync: bool = False  # distrust the state file: read our objects back and reload them all


@dataclass
class ApplyReport:
    """What happened, for the CLI to print (stderr) and for tests/benchmarks to inspect."""

    kind: str = "none"
    summary: str = ""
    payload: str = ""
    written: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    conntrack_deleted: int = 0


@dataclass(frozen=True)
class ApplyInput:
    """The manifests and node config of an apply, compiled only when needed: not at all when
    the input is the one last applied, else incrementally against the state dir's cache."""

    sources: list[Source]
    config: ProxyConfig
    on_warnings: Callable[[list[Diagnostic]], None] = field(default=lambda _: None)

    def compile(self, cache: CompileCache | None) -> IncrementalCompile:
        compiled = compile_incremental(self.sources, self.config, cache)
        self.on_warnings(compiled.warnings)
        return compiled


def applier_for(backend: str) -> Applier:
    factory = get_backend(backend).applier
    if factory is None:
        raise UsageError(f"backend {backend!r} cannot be applied to a host (compile only)")
    applier: Applier = factory()
    return applier


class _Timer:
    def __init__(self, report: ApplyReport) -> None:
        self.report = report
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.report.timings[name] = self.report.timings.get(name, 0.0) + now - self.last
        self.last = now


def _trusted_state(
    applier: Applier,
    runner: Runner,
    store: StateStore,
    options: RenderOptions,
    report: ApplyReport,
    *,
    dry_run: bool,
    resync: bool = False,
) -> tuple[dict[str, Any] | None, bool]:
    """The state to diff against and whether it matches the kernel. A trusted state may still
    lack its bulk part (StateStore.complete)."""
    state = store.load()
    pending = store.load_pending()
    marker = applier.marker(runner, pending or state)
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
        if not resync:
            return state, True
        report.notes.append("--resync: reading our objects back from the kernel and reloading them all")
        live = applier.read_live(runner, options)
        if live is not None:
            live["udp"] = (store.complete(state) or {}).get("udp", {})
        return live, False
    if state is not None:
        report.notes.append(
            f"state file does not match the kernel (kernel generation {marker or 'none'}, "
            f"state {state.get('generation')}): reading our objects back from the kernel"
        )
    # Untrusted: read what we own from the kernel (slow but rare: first run, drift, crash).
    live = applier.read_live(runner, options)
    if live is not None and state is not None:
        # Best knowledge of the endpoints for conntrack cleanup.
        live["udp"] = (store.complete(state) or {}).get("udp", {})
    return live, False


def apply_plan(
    plan: Plan | Callable[[], Plan] | ApplyInput,
    backend: str,
    render_options: RenderOptions,
    options: ApplyOptions,
    runner: Runner | None = None,
    input_digest: str | None = None,
) -> ApplyReport:
    """Apply a plan, or a function compiling it, or an input to compile incrementally. With
    `input_digest`, the compile is skipped when the input is the one last applied and the
    kernel still matches the state."""
    applier = applier_for(backend)
    report = ApplyReport()
    timer = _Timer(report)
    require_net_admin()
    store = StateStore(options.state_dir, backend, getattr(applier, "bulk_state_keys", ()))
    with StateLock(options.state_dir, options.lock_timeout) as lock:
        runner = runner or Runner(keep_fds=(lock.fd,) if lock.fd is not None else ())
        timer.lap("lock")
        old, trusted = _trusted_state(
            applier, runner, store, render_options, report, dry_run=options.dry_run, resync=options.resync
        )
        timer.lap("check")
        if (
            trusted
            and old is not None
            and input_digest is not None
            and old.get("input") == input_digest
            and applier.quick_check(runner, old)
        ):
            timer.lap("check")
            wanted = old.get("sysctls", {})
            if options.dry_run:
                report.notes.extend(_would_set(wanted))
            else:
                report.notes.extend(
                    f"set sysctl {line}" for line in ensure_sysctls(wanted, allowed=options.sysctl)
                )
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
        if trusted and old is not None:
            complete = store.complete(old)
            if complete is None:
                report.notes.append(
                    f"state file {store.path} names a missing or damaged bulk file: "
                    "reading our objects back from the kernel"
                )
                old, trusted = applier.read_live(runner, render_options), False
            else:
                old = complete
            timer.lap("state")
        generation = new_generation()
        compiled: IncrementalCompile | None = None
        cache: CompileCache | None = None
        if isinstance(plan, ApplyInput):
            cache = CompileCache.load(cache_path(options.state_dir, backend))
            if cache.note:
                report.notes.append(cache.note)
            compiled = plan.compile(cache)
            timer.lap("compile")
        if compiled is not None and hasattr(applier, "plan_compiled"):
            incremental: CompiledApplier = applier  # type: ignore[assignment]
            change = incremental.plan_compiled(runner, old, trusted, compiled, render_options, generation)
            timer.lap("plan")
            wanted_sysctls = change.sysctls if change.sysctls is not None else {}
        else:
            if compiled is not None:
                plan = compiled.plan()
            elif callable(plan):
                plan = plan()
            assert isinstance(plan, Plan)
            timer.lap("compile")
            desired = applier.desired(plan, render_options)
            timer.lap("render")
            change = applier.plan_change(runner, old, trusted, desired, generation)
            timer.lap("plan")
            wanted_sysctls = applier.sysctls(plan)
        report.kind, report.summary, report.payload = change.kind, change.summary, change.payload
        if change.new_state is not None:
            change.new_state["input"] = input_digest
            change.new_state["sysctls"] = wanted_sysctls
        if options.dry_run:
            report.notes.extend(_would_set(wanted_sysctls))
            return report
        for line in ensure_sysctls(wanted_sysctls, allowed=options.sysctl):
            report.notes.append(f"set sysctl {line}")
        if change.kind == "none":
            _record_unchanged(store, old, trusted, change, input_digest, wanted_sysctls)
            if cache is not None and compiled is not None:
                cache.save(compiled)
                timer.lap("cache")
            return report
        applier.validate(runner, change)
        timer.lap("validate")
        assert change.new_state is not None
        store.write_pending(change.new_state, change.touched)
        timer.lap("state")
        try:
            applier.load(runner, change)
        except ApplyError:
            store.drop_pending()
            raise
        timer.lap("load")
        report.written = True
        store.commit_pending()
        timer.lap("state")
        if cache is not None and compiled is not None:
            cache.save(compiled)
            timer.lap("cache")
        if options.conntrack:
            old_udp = old.get("udp") if old else None
            if old_udp is None:
                # Untrusted and not read back: the state file's knowledge, which by now is the
                # state just committed (reading it back would cost a bulk read to find that).
                old_udp = change.new_state.get("udp", {})
            deletions = conntrack.stale_deletions(old_udp, change.new_state.get("udp", {}))
            if deletions:
                deleted, warnings = conntrack.clear_stale(runner, deletions)
                report.conntrack_deleted = deleted
                report.notes.extend(warnings)
                if deleted:
                    report.notes.append(
                        f"conntrack: deleted {deleted} stale UDP entr{'y' if deleted == 1 else 'ies'}"
                    )
            timer.lap("conntrack")
    return report


def _record_unchanged(
    store: StateStore,
    old: dict[str, Any] | None,
    trusted: bool,
    change: Change,
    input_digest: str | None,
    sysctls: dict[str, str],
) -> None:
    """Same rules from a different input: remember the input (the next run skips the compile)
    and what the applier learnt about it (e.g. the Services' new fingerprints)."""
    if not trusted or old is None:
        return
    update = change.state_update or {}
    if (not input_digest or old.get("input") == input_digest) and all(
        old.get(key) == value for key, value in update.items()
    ):
        return
    store.write_pending({**old, **update, "input": input_digest, "sysctls": sysctls})
    store.commit_pending()


def input_digest(backend: str, config: object, render_options: RenderOptions, sources: list[Source]) -> str:
    """Everything the compiled rules depend on: the svc2rules version and code, the backend,
    the node config, the render options and every input file's name and bytes."""
    digest = hashlib.sha256()
    for part in (__version__, code_identity(), backend, repr(config), repr(render_options)):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(source.name.encode() + b"\0" + str(len(source.data)).encode() + b"\0")
        digest.update(source.data)
    return digest.hexdigest()


def _would_set(wanted: dict[str, str]) -> list[str]:
    return [
        f"would set sysctl {name}={value} (is {read_sysctl(name)})"
        for name, value in sorted(wanted.items())
        if read_sysctl(name) != value
    ]


def cleanup_host(
    backend: str, render_options: RenderOptions, options: ApplyOptions, runner: Runner | None = None
) -> ApplyReport:
    applier = applier_for(backend)
    report = ApplyReport()
    require_net_admin()
    store = StateStore(options.state_dir, backend, getattr(applier, "bulk_state_keys", ()))
    with StateLock(options.state_dir, options.lock_timeout) as lock:
        runner = runner or Runner(keep_fds=(lock.fd,) if lock.fd is not None else ())
        state = store.load_pending() or store.load()
        change = applier.plan_cleanup(runner, state, render_options)
        report.kind, report.summary, report.payload = change.kind, change.summary, change.payload
        if options.dry_run or change.kind == "none":
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
    store.remove()
    remove_cache(cache_path(state_dir, backend))


def diff_plan(
    plan: Plan,
    backend: str,
    render_options: RenderOptions,
    options: ApplyOptions,
    runner: Runner | None = None,
) -> tuple[str, bool]:
    """Unified diff of our owned objects, live (kernel) vs compiled, in the kernel's own spelling."""
    applier = applier_for(backend)
    require_net_admin()
    desired = applier.desired(plan, render_options)
    with StateLock(options.state_dir, options.lock_timeout):
        runner = runner or Runner()
        live = applier.dump_live(runner, render_options)
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


def print_report(report: ApplyReport, *, verbose_timings: bool = False) -> None:
    for note in report.notes:
        sys.stderr.write(f"{note}\n")
    if verbose_timings:
        parts = " ".join(f"{k}={v:.3f}s" for k, v in report.timings.items())
        sys.stderr.write(f"timings: {parts}\n")
