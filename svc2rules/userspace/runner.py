"""The proxy's life cycle: start, reload on SIGHUP, drain on SIGTERM/SIGINT.

Order matters on every (re)load: listeners open before rules point at them, and stale
listeners close only after the rules stopped pointing at them, so a REDIRECT never lands
on a closed port while the proxy keeps running. On the way out the rules (when the proxy
manages them and is not told to keep them) go first, then the listeners drain: connections
already redirected keep their NAT mapping in conntrack and finish.

The rules themselves are the caller's business (`install_rules` / `remove_rules`: the CLI
hands them to the userspace backend's applier through the apply engine); the runtime only
says when.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from svc2rules.backends.userspace.layout import Layout, build_layout
from svc2rules.errors import ApplyError, Svc2RulesError
from svc2rules.ir import Plan
from svc2rules.load import Source
from svc2rules.userspace.server import Changes, Proxy, ProxySettings

log = logging.getLogger("svc2rules.proxy")


@dataclass(frozen=True)
class Manifests:
    """One reading of the proxy's input: the files as read and the plan compiled from them
    (the rules are compiled from the same bytes, so they match the listeners)."""

    sources: tuple[Source, ...]
    plan: Plan


LoadManifests = Callable[[], Manifests]
InstallRules = Callable[[Manifests], None]
RemoveRules = Callable[[], None]


@dataclass(frozen=True)
class Runtime:
    settings: ProxySettings
    load: LoadManifests  # raises Svc2RulesError on invalid input
    install_rules: InstallRules | None = None
    # Called on the way out, after a successful start (None: the rules stay).
    remove_rules: RemoveRules | None = None


class Runner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.proxy = Proxy(runtime.settings)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # Handlers first: a SIGHUP during start-up must not kill the process (its default action).
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._start()
            reloader = loop.create_task(self._reloads())
            await self._stop.wait()
            reloader.cancel()
            removal = await self._remove()
            cut = await self.proxy.drain(self.runtime.settings.grace_period)
            log.info("stopped%s", f" ({cut} connection(s) cut at the end of the grace period)" if cut else "")
            if removal is not None:
                raise removal
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _start(self) -> None:
        manifests = await asyncio.get_running_loop().run_in_executor(None, self.runtime.load)
        layout = build_layout(manifests.plan, self.runtime.settings.addressing.port_range)
        changes = await self.proxy.open(layout)
        if changes.failed:
            await self.proxy.drain(0)
            raise ApplyError("cannot listen: " + "; ".join(changes.failed))
        await self._install(manifests)
        tcp = sum(1 for lst in layout if lst.protocol.keyword == "tcp")
        log.info(
            "ready: %d listener(s) (%d TCP, %d UDP) on %s, ports %s",
            len(changes.opened),
            tcp,
            len(changes.opened) - tcp,
            self.runtime.settings.addressing.bind,
            layout.port_range,
        )

    async def _install(self, manifests: Manifests) -> None:
        if self.runtime.install_rules is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.runtime.install_rules, manifests)

    async def _remove(self) -> Svc2RulesError | None:
        """Remove the rules; what went wrong is returned, to be raised once the listeners drained."""
        if self.runtime.remove_rules is None:
            return None
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.runtime.remove_rules)
        except Svc2RulesError as exc:
            log.error("rules not removed: %s", _one_line(str(exc)))
            return exc
        log.info("rules removed")
        return None

    async def _reloads(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()  # SIGHUPs arriving during a reload coalesce into one more
            await self.reload()

    async def reload(self) -> Changes | None:
        loop = asyncio.get_running_loop()
        try:
            manifests = await loop.run_in_executor(None, self.runtime.load)
            layout: Layout = build_layout(manifests.plan, self.runtime.settings.addressing.port_range)
        except Svc2RulesError as exc:
            log.error("reload failed, keeping the previous configuration: %s", _one_line(str(exc)))
            return None
        changes = await self.proxy.open(layout)
        for failure in changes.failed:
            log.error("reload: cannot listen: %s", failure)
        try:
            await self._install(manifests)
        except Svc2RulesError as exc:
            # The old rules may still point at listeners the new layout drops: keep them open.
            log.error("reload: rules not applied, keeping every listener open: %s", _one_line(str(exc)))
            return changes
        self.proxy.close_stale(layout, changes)
        log.info("reloaded: %s", changes.summary())
        return changes

    def stop(self) -> None:
        self._stop.set()


def _one_line(text: str) -> str:
    return text.replace("\n", "; ")
