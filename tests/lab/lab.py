"""The :class:`Lab`: one test's throw-away topology, its listeners, rule loading and probing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import netns
from .agents import Listeners
from .loaders import Loader
from .probe import Attempt, Batch, Origin, Outcome, Probe, ProbeResult, Proto, run_attempts
from .topology import EXT_CLIENT, EXT_CLIENTS, NODE_ADDRESSES, POD_CLIENT, POD_CLIENTS, Topology

# Client source ports come from above the kernel's ephemeral range (32768-60999) and are reserved:
# listeners (which the lab opens on every port a test uses) must stay below them.
_SRC_PORT_FIRST, _SRC_PORT_LAST = 61000, 65535
_ORIGIN_ROLE: dict[str, str] = {"ext": "ext", "pod": "pods", "node": "node"}


@dataclass(frozen=True)
class Deployment:
    """A manifest ``scenario.deploy`` compiled and loaded; ``explain_check`` replays it afterwards."""

    backend: str
    manifest: str
    masquerade_all: bool
    first_probe: int  # index into Lab.history of the first probe run against these rules


class Lab:
    """Build with :meth:`create` (a context manager) or the ``lab`` pytest fixture."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        w = topo.workers
        self.pods = Listeners(w["pods"], "pod")
        self.sink = Listeners(w["sink"], "sink", anyip=True)
        self.node_listeners = Listeners(w["node"], "node")
        self.loaded: list[tuple[str, str]] = []
        self.deployments: list[Deployment] = []
        self.history: list[ProbeResult] = []  # every probe's result, in order
        self._next_port: dict[tuple[str, str, str], int] = {}

    @classmethod
    @contextlib.contextmanager
    def create(cls) -> Iterator[Lab]:
        netns.reap_stale_once()
        topo = Topology.build()
        lab: Lab | None = None
        try:
            lab = cls(topo)
            yield lab
        finally:
            if lab is not None:
                lab.close()
            else:
                topo.destroy()

    @property
    def node_netns(self) -> str:
        return self.topo.node

    # -- setup ---------------------------------------------------------------------------------
    def add_pods(self, ips: Iterable[str], ports: Iterable[int]) -> None:
        """Put endpoint IPs into the pods namespace, with TCP and UDP listeners on ``ports``.

        Listeners bind 0.0.0.0, so every pod IP answers on every port asked for; the answer tells
        which ip:port was hit, which is what tests assert on.
        """
        ip_list, port_set = list(ips), _check_ports(ports)
        self.topo.add_pod_ips(ip_list)
        self.pods.ensure(port_set)
        # A DNAT to the right port but an address that is not a pod lands in the sink: answer there.
        self.sink.ensure(port_set)

    def load(self, loader: Loader, ruleset_text: str) -> None:
        self.loaded.append((loader.name, ruleset_text))
        loader.load(self.node_netns, ruleset_text)

    # -- probing -------------------------------------------------------------------------------
    def probe(
        self,
        origin: Origin,
        dst: str,
        port: int,
        proto: Proto = "tcp",
        *,
        src: str | tuple[str, ...] | None = None,
        count: int = 1,
        expect_drop: bool = False,
    ) -> ProbeResult:
        return self.probe_many([Probe(origin, dst, port, proto, src, count, expect_drop)])[0]

    def probe_many(self, probes: Sequence[Probe]) -> list[ProbeResult]:
        """Run every connection of every probe concurrently, as one batch (see probe.py: expected
        drops are watched until the connections that should be answered have their verdict)."""
        plans: list[tuple[Probe, list[str | None], list[Attempt]]] = []
        for p in probes:
            srcs = [self._default_src(p.origin) if s is None else s for s in p.sources()]
            for s in srcs:
                self._check_src(p.origin, s)
            attempts = [self._attempt(p, s) for s in srcs]
            plans.append((p, srcs, attempts))
        ports = _check_ports(p.port for p in probes)
        self.sink.ensure(ports)
        self.node_listeners.ensure(ports)
        # Pods listen on the probed ports too: a DNAT that forgot to rewrite the port then shows up
        # as Answered by "10.180.0.1:80" (a clear wrong-endpoint failure) rather than as Rejected.
        self.pods.ensure(ports)

        async def run_all() -> list[list[Outcome]]:
            batch = Batch()
            for _, _, attempts in plans:
                batch.add(attempts)
            return list(
                await asyncio.gather(
                    *(run_attempts(self.topo.workers[_ORIGIN_ROLE[p.origin]], a, batch) for p, _, a in plans)
                )
            )

        outcomes = asyncio.run(run_all())
        results = [ProbeResult(p, o, srcs) for (p, srcs, _), o in zip(plans, outcomes, strict=True)]
        self.history.extend(results)
        return results

    def _attempt(self, p: Probe, src: str | None) -> Attempt:
        port = self._src_port(p.origin, src, p.proto)
        return Attempt(p.proto, src or "0.0.0.0", port, p.dst, p.port, p.timeout, p.expect_drop)

    def _default_src(self, origin: Origin) -> str | None:
        return {"ext": EXT_CLIENT, "pod": POD_CLIENT, "node": None}[origin]

    def _check_src(self, origin: Origin, src: str | None) -> None:
        allowed: Iterable[str]
        if origin == "ext":
            allowed = EXT_CLIENTS
        elif origin == "pod":
            allowed = {*POD_CLIENTS, *self.topo.pod_ips}
        else:
            allowed = NODE_ADDRESSES
        if src is not None and src not in allowed:
            raise ValueError(f"{src} is not a client address of {origin}; choose from {sorted(allowed)}")

    def _src_port(self, origin: str, src: str | None, proto: str) -> int:
        key = (origin, src or "*", proto)
        port = self._next_port.get(key, _SRC_PORT_FIRST)
        self._next_port[key] = port + 1 if port < _SRC_PORT_LAST else _SRC_PORT_FIRST
        return port

    # -- diagnostics ---------------------------------------------------------------------------
    def node_exec(self, argv: Sequence[str], input_text: str | None = None) -> str:
        return netns.exec_in(self.node_netns, argv, input_text=input_text)

    def dump_state(self) -> str:
        """Rules and conntrack of the node, for failure reports."""
        parts = []
        for title, argv in (
            ("iptables-save", ["iptables-save"]),
            ("nft list ruleset", ["nft", "list", "ruleset"]),
            ("conntrack -L", ["conntrack", "-L"]),
        ):
            try:
                parts.append(f"--- {title} ---\n{self.node_exec(argv)}")
            except (netns.CommandError, OSError) as exc:
                parts.append(f"--- {title} --- unavailable: {exc}")
        return "\n".join(parts)

    def close(self) -> None:
        try:
            for listeners in (self.pods, self.sink, self.node_listeners):
                listeners.close()
        finally:
            self.topo.destroy()


def _check_ports(ports: Iterable[int]) -> set[int]:
    out = set(ports)
    bad = sorted(p for p in out if not 0 < p < _SRC_PORT_FIRST)
    if bad:
        raise ValueError(f"ports {bad}: the lab supports 1-{_SRC_PORT_FIRST - 1} (above are client ports)")
    return out
