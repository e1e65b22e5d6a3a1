"""`svc2rules run`: the long-running form of the apply engine, with its input and state in memory.

    sources (folder watch, watch-event streams) -> changes -> batched (--min-sync-period)
        -> LiveCompiler.update (only the changed sources) -> engine apply_plan (EngineMemory:
           no state-file read per change; the state file is still written)
        -> health-check servers, /healthz, /metrics

Every --sync-period the engine re-reads our objects from the kernel and repairs drift (a
flushed chain, a deleted table). An input without a Service keeps the rules (said once). A
failed kernel write is retried with a growing delay; /healthz turns unhealthy when an update
has waited longer than --health-timeout. SIGTERM/SIGINT stop serving and leave the rules in
place (as kube-proxy); SIGHUP re-reads the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from svc2rules.agent import http
from svc2rules.agent.health import HealthCheck, ProxyHealth, ServiceHealth, health_check_of
from svc2rules.agent.invalid import left_out
from svc2rules.agent.live import LiveCompilation, LiveCompiler, LiveUpdate
from svc2rules.agent.metrics import Metrics
from svc2rules.agent.sources import Changes, EventStream, FolderInput, FolderWatch, StreamReader
from svc2rules.apply.engine import ApplyInput, ApplyOptions, ApplyReport, EngineMemory, apply_plan
from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import ChangeKind
from svc2rules.config import ProxyConfig
from svc2rules.errors import ApplyError, InputError, LockBusyError, Svc2RulesError, UsageError
from svc2rules.resolve.endpoints import ServiceRef
from svc2rules.resolve.plan import ServiceResolution

# A restarted kubectl lists every object again; its listing is taken as complete once the
# stream pauses this long.
RELIST_SETTLE = 1.0
MAX_RETRY_DELAY = 60.0


@dataclass(frozen=True)
class Setup:
    """What the options builder chose (re-read on SIGHUP)."""

    config: ProxyConfig
    backend: str
    render: RenderOptions[Any]


@dataclass(frozen=True)
class AgentOptions:
    paths: list[str] = field(default_factory=list)
    recursive: bool = False
    max_bytes: int = 256 * 1024 * 1024
    events: list[str] = field(default_factory=list)
    min_sync_period: float = 1.0
    sync_period: float = 3600.0
    health_timeout: float = 60.0
    strict: bool = False
    healthz: tuple[str, int] | None = ("0.0.0.0", 10256)
    metrics: tuple[str, int] | None = ("127.0.0.1", 10249)
    health_check_addresses: tuple[str, ...] = ("0.0.0.0",)
    apply: ApplyOptions = field(default_factory=ApplyOptions)


class FatalError(Svc2RulesError):
    """The agent cannot go on (exit 1)."""


@dataclass(frozen=True)
class LiveInput(ApplyInput):
    """An ApplyInput whose compile is already done (LiveCompiler) and whose sources' digests
    are known: the engine hashes nothing and compiles nothing again."""

    compiled: LiveCompilation | None = None
    digests: tuple[bytes, ...] = ()

    def compile(self, cache: Any) -> LiveCompilation:
        assert self.compiled is not None
        return self.compiled

    def source_digests(self) -> list[bytes]:
        return list(self.digests)


@dataclass
class _Totals:
    """Per Service, what the metrics sum; kept up to date for the changed Services only."""

    per_service: dict[ServiceRef, tuple[int, int, int, int]] = field(default_factory=dict)
    sums: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def set(self, ref: ServiceRef, resolution: ServiceResolution | None) -> None:
        old = self.per_service.pop(ref, (0, 0, 0, 0))
        new = _service_totals(resolution) if resolution is not None else (0, 0, 0, 0)
        if resolution is not None:
            self.per_service[ref] = new
        self.sums = [s - o + n for s, o, n in zip(self.sums, old, new, strict=True)]


def _service_totals(resolution: ServiceResolution) -> tuple[int, int, int, int]:
    ports = endpoints = internal = external = 0
    for sp in resolution.service_ports:
        ports += 1
        endpoints += len(sp.reachable_endpoints)
        if sp.has_endpoints and not sp.local_endpoints:
            internal += sp.internal_policy_local
            external += sp.external_policy_local and sp.externally_accessible
    return ports, endpoints, internal, external


class Agent:
    def __init__(
        self,
        setup: Setup,
        options: AgentOptions,
        *,
        log: Callable[[str], None],
        reconfigure: Callable[[], Setup] | None = None,
    ) -> None:
        self.setup = setup
        self.options = options
        self.log = log
        self.reconfigure = reconfigure
        self.metrics = Metrics(setup.backend)
        self.health = ProxyHealth(options.health_timeout)
        self.services = ServiceHealth(self.health, options.health_check_addresses, log)
        self.live = LiveCompiler(setup.config)
        self.memory = EngineMemory()
        self.totals = _Totals()
        self.folder = (
            FolderInput(options.paths, recursive=options.recursive, max_bytes=options.max_bytes)
            if options.paths
            else None
        )
        self.streams = [
            EventStream(path if path != "-" else "<stdin>", index)
            for index, path in enumerate(options.events, start=len(options.paths))
        ]
        self.pending: Changes = {}
        self.first_seen: float | None = None  # when the oldest pending change was seen
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.fatal: str | None = None
        self.reload_requested = False
        self.resync_due = time.monotonic() + options.sync_period
        self.retry_at: float | None = None
        self.retry_delay = 0.0
        self.empty = False
        self.last_sync_start = 0.0
        self.servers: list[asyncio.Server] = []
        self.readers: list[StreamReader] = []
        self.watch: FolderWatch | None = None
        self.settle_timers: dict[int, asyncio.TimerHandle] = {}
        self.synced_once = False
        self.health_pending: set[ServiceRef] = set()  # Services changed since the last good sync
        self.last_read = 0.0
        self._event_loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = self._event_loop = asyncio.get_running_loop()
        await self._serve()
        for sig, handler in (
            (signal.SIGTERM, self._stop),
            (signal.SIGINT, self._stop),
            (signal.SIGHUP, self._hup),
        ):
            loop.add_signal_handler(sig, handler)
        if self.folder is not None:
            self._queue(self.folder.read_all())
            self.watch = FolderWatch(
                self.folder.watched_folders(), self.options.recursive, self._paths_changed
            )
            self.watch.start()
        for stream, path in zip(self.streams, self.options.events, strict=True):
            reader = StreamReader(path, loop, self._stream_event(stream), sys.stdin.buffer)
            self.readers.append(reader)
            reader.start()
        self.log(f"ready: {self.setup.backend} backend; {self._listening()}")
        # The first sync starts from everything read so far (a stream may still be listing).
        self.wake.set()
        try:
            await self._loop()
        finally:
            await self._shutdown()
        if self.fatal is not None:
            raise FatalError(self.fatal)

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            timeout = self._next_deadline() - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken(), max(timeout, 0.0))
            if self.stopping.is_set():
                break
            now = time.monotonic()
            wait = self.last_sync_start + self.options.min_sync_period - now
            if wait > 0 and (self.pending or self.reload_requested):
                # kube-proxy's minSyncPeriod: changes arriving meanwhile join this sync.
                await asyncio.sleep(wait)
                if self.stopping.is_set():
                    break
            await self._sync_if_due()

    async def _woken(self) -> None:
        await self.wake.wait()
        self.wake.clear()

    def _next_deadline(self) -> float:
        deadlines = [self.resync_due]
        if self.retry_at is not None:
            deadlines.append(self.retry_at)
        return min(deadlines)

    async def _sync_if_due(self) -> None:
        now = time.monotonic()
        if self.reload_requested:
            self.reload_requested = False
            self._reload()
        changes, self.pending = self.pending, {}
        seen, self.first_seen = self.first_seen, None
        # A steady stream of changes must not put the periodic full check off for ever.
        due = self.synced_once and now >= self.resync_due
        if changes or not self.synced_once:
            await self._sync(changes, seen, resync=due)
        elif self.retry_at is not None and now >= self.retry_at:
            await self._sync({}, None, resync=due)
        elif due:
            await self._sync({}, None, resync=True)

    async def _sync(self, changes: Changes, seen: float | None, *, resync: bool) -> None:
        started = time.monotonic()
        self.last_sync_start = started
        first = not self.synced_once
        if resync or first:
            # As kube-proxy's full sync: a period after the last one, whatever changed between.
            self.resync_due = started + self.options.sync_period
        self.retry_at = None
        read_started = time.perf_counter()
        self.last_read = 0.0
        update: LiveUpdate | None = None
        if changes or not self.synced_once:
            update = await asyncio.to_thread(self._update, changes)
            self.last_read = time.perf_counter() - read_started
            self.metrics.input_read.observe(self.last_read)
            self._say_input(update)
        compiled = update.compilation if update is not None else self.live.compilation()
        self.synced_once = True
        if self.options.strict and (problems := self.live.skipped()):
            self._fail(
                "invalid",
                f"--strict: the input has {len(problems)} problem(s); the rules stay as they are until it is fixed",
            )
            for line in problems:
                self.log(f"error: {line}")
            return
        if not compiled.services:
            if not self.empty:
                self.log(
                    "the input has no Service (every file gone, or a watch stream listing nothing yet): "
                    "keeping the rules in the kernel as they are"
                )
                self.metrics.empty_input.inc()
            self.empty = True
            self.metrics.input_empty.set(1)
            self.health.updated()
            return
        if self.empty:
            self.log("the input has Services again")
        self.empty = False
        self.metrics.input_empty.set(0)
        # After the first sync (which, as a one-shot apply, checks the kernel whole when the
        # state's last full check is older than --sync-period) the agent's own timer does the
        # periodic full check: never a change, whose latency it would take.
        options = replace(
            self.options.apply,
            resync=resync,
            compile_cache=False,
            sync_period=self.options.sync_period if first else None,
            check_whole_writes=False,
        )
        try:
            report = await asyncio.to_thread(self._apply, compiled, options)
        except LockBusyError as exc:
            self._fail("busy", f"{exc}; trying again", retry=True)
            return
        except ApplyError as exc:
            self.metrics.restore_failures.inc()
            self._fail("kernel", f"error: {exc}", retry=True)
            return
        except (UsageError, InputError, Svc2RulesError) as exc:
            self._fail("failed", f"error: {exc}", retry=True)
            return
        self._synced(report, started, seen, resync=resync, full=bool(update and update.full))
        self.live.settled()
        await self._sync_health_checks()
        if resync or (update is not None and update.full):
            # The compiled input lives as long as the process: the cyclic collector need not
            # scan it again (at 10k Services a collection of it takes longer than a sync).
            gc.collect()
            gc.freeze()

    def _update(self, changes: Changes) -> LiveUpdate:
        if not self.synced_once:
            return self.live.load(change for change in changes.values() if change is not None)
        return self.live.update(changes)

    def _apply(self, compiled: LiveCompilation, options: ApplyOptions) -> ApplyReport:
        setup = self.setup
        facts = self.live.in_order()
        apply_input = LiveInput(
            [f.source for f in facts],
            setup.config,
            setup.backend,
            setup.render,
            skip_invalid=not self.options.strict,
            compiled=compiled,
            digests=tuple(f.digest for f in facts),
        )
        return apply_plan(apply_input, options, memory=self.memory)

    def _say_input(self, update: LiveUpdate) -> None:
        lines = left_out(update.skipped)
        for line in lines:
            self.log(f"warning: {line}")
        self.metrics.invalid_skipped.inc(len(lines))
        self.metrics.invalid_objects.set(self.live.skipped_count())
        for warning in update.warnings:
            self.log(f"warning: {warning}")
        self.metrics.service_changes.inc(len(update.changed))
        self.health_pending |= update.changed
        for ref in update.changed:
            self.totals.set(ref, self.live.resolution(ref))
        ports, endpoints, internal, external = self.totals.sums
        self.metrics.service_ports.set(ports)
        self.metrics.endpoints.set(endpoints)
        self.metrics.no_local_endpoints.labels(traffic_policy="internal").set(internal)
        self.metrics.no_local_endpoints.labels(traffic_policy="external").set(external)

    def _synced(
        self, report: ApplyReport, started: float, seen: float | None, *, resync: bool, full: bool
    ) -> None:
        elapsed = time.monotonic() - started
        self.metrics.sync_duration.observe(elapsed)
        if report.kind == ChangeKind.FULL or resync or full:
            self.metrics.full_sync_duration.observe(elapsed)
        else:
            self.metrics.partial_sync_duration.observe(elapsed)
        if "load" in report.timings:
            self.metrics.kernel_write.observe(report.timings["load"])
        self.metrics.last_sync.set(time.time())
        if seen is not None:
            self.metrics.programming.observe(time.monotonic() - seen)
        self.health.updated()
        self.retry_delay = 0.0
        for note in report.notes:
            self.log(note)
        if report.kind != ChangeKind.NONE:
            what = "resync: repaired" if resync else "applied"
            steps = {"read": self.last_read, **report.timings}
            detail = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in steps.items())
            self.log(f"{what} ({report.summary}) in {elapsed * 1000:.0f} ms ({detail} ms)")

    def _fail(self, reason: str, message: str, *, retry: bool = False) -> None:
        self.metrics.sync_failures.labels(reason=reason).inc()
        self.log(message)
        if retry:
            self.retry_delay = min(max(self.retry_delay * 2, 1.0), MAX_RETRY_DELAY)
            self.retry_at = time.monotonic() + self.retry_delay

    async def _sync_health_checks(self) -> None:
        """As kube-proxy: once the rules are in, for every Service changed since the last time."""
        changed, self.health_pending = self.health_pending, set()
        checks: dict[tuple[str, str], HealthCheck | None] = {
            ref: health_check_of(self.live.resolution(ref)) for ref in changed
        }
        await self.services.sync(checks)
        self.metrics.health_check_servers.set(len(self.services.servers))

    # -- inputs ------------------------------------------------------------------------------------

    def _queue(self, changes: Changes) -> None:
        if not changes:
            return
        self.pending.update(changes)
        if self.first_seen is None:
            self.first_seen = time.monotonic()
        self.metrics.last_queued.set(time.time())
        self.metrics.endpoint_changes.inc(len(changes))
        self.health.queued()
        self.wake.set()

    def _paths_changed(self, paths: set[str]) -> None:
        """From the watch thread."""
        assert self._event_loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._event_loop.call_soon_threadsafe(self._read_paths, paths)

    def _read_paths(self, paths: set[str]) -> None:
        assert self.folder is not None
        changes, problems = self.folder.changed(paths)
        for problem in problems:
            self.log(f"warning: {problem}; its previous content is kept")
        self._queue(changes)

    def _stream_event(self, stream: EventStream) -> Callable[[str, Any], None]:
        def deliver(what: str, value: Any) -> None:
            if what == "event":
                changes, notes, node = stream.apply(value)
                for note in notes:
                    self.log(f"warning: {note}")
                if node is not None or _is_node(value):
                    self._node_event(value)
                self._queue(changes)
                if stream.relisting is not None:
                    self._settle_later(stream)
            elif what == "restart":
                self.log(
                    f"{stream.label}: a new writer; its listing replaces the objects of the last one "
                    f"({len(stream.objects)}) once it pauses for {RELIST_SETTLE:g} s"
                )
                stream.restarted()
            elif what == "ended":
                self.log(f"{stream.label}: the stream ended; keeping its {len(stream.objects)} objects")
            elif what == "problem":
                self.log(f"warning: {value}")
            elif what == "fatal":
                self.fatal = str(value)
                self.stopping.set()
                self.wake.set()

        return deliver

    def _settle_later(self, stream: EventStream) -> None:
        timer = self.settle_timers.pop(stream.index, None)
        if timer is not None:
            timer.cancel()

        def settle() -> None:
            self.settle_timers.pop(stream.index, None)
            self._queue(stream.settle())

        assert self._event_loop is not None
        self.settle_timers[stream.index] = self._event_loop.call_later(RELIST_SETTLE, settle)

    def _node_event(self, event: dict[str, Any]) -> None:
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        name = (obj.get("metadata") or {}).get("name")
        if name != self.setup.config.node_name:
            return
        self.health.sync_node(None if event.get("type") == "DELETED" else obj)

    # -- serving -----------------------------------------------------------------------------------

    async def _serve(self) -> None:
        wanted = (
            ("--healthz-bind-address", self.options.healthz, self._healthz),
            ("--metrics-bind-address", self.options.metrics, self._metrics),
        )
        for flag, address, handler in wanted:
            if address is None:
                continue
            try:
                self.servers.append(await http.start(handler, *address))
            except OSError as exc:
                await self._shutdown()
                raise FatalError(
                    f"{flag}: cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
                ) from None

    def _listening(self) -> str:
        parts = []
        if self.options.healthz is not None:
            parts.append(f"/healthz and /livez on {self.options.healthz[0]}:{self.options.healthz[1]}")
        if self.options.metrics is not None:
            parts.append(f"/metrics on {self.options.metrics[0]}:{self.options.metrics[1]}")
        return ", ".join(parts) or "no HTTP endpoints"

    def _healthz(self, path: str) -> http.Response:
        if path == "/healthz":
            response = self.health.answer(node=True)
            self.metrics.healthz.labels(code=str(response.status)).inc()
            return response
        if path == "/livez":
            response = self.health.answer(node=False)
            self.metrics.livez.labels(code=str(response.status)).inc()
            return response
        return http.Response(404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"})

    def _metrics(self, path: str) -> http.Response:
        if path != "/metrics":
            return http.Response(404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"})
        body, content_type = self.metrics.exposition()
        return http.Response(200, body, {"Content-Type": content_type})

    # -- signals -----------------------------------------------------------------------------------

    def _stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.log("stopping: the rules stay in the kernel")

    def _hup(self) -> None:
        self.log("SIGHUP: reading the config again")
        self.reload_requested = True
        self.wake.set()

    def _reload(self) -> None:
        if self.reconfigure is None:
            return
        try:
            setup = self.reconfigure()
        except (UsageError, Svc2RulesError) as exc:
            self.log(f"error: the config was not changed: {exc}")
            return
        if setup == self.setup:
            self.log("the config is unchanged")
            return
        self.setup = setup
        current = {f.source.name: (f.order, f.source) for f in self.live.in_order()}
        self.live = LiveCompiler(setup.config)
        self.synced_once = False
        self.pending = {**current, **self.pending}
        self.log("the config changed: compiling everything again")

    async def _shutdown(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        for reader in self.readers:
            reader.stop()
        for timer in self.settle_timers.values():
            timer.cancel()
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers = []
        await self.services.close()


def _is_node(event: Any) -> bool:
    obj = event.get("object") if isinstance(event, dict) else None
    return isinstance(obj, dict) and obj.get("kind") == "Node"
