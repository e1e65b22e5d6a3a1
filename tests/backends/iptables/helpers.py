"""Shared builders for the iptables backend's unit tests: clusters, compiles, a fake host."""

from __future__ import annotations

import json
from typing import Any, cast

from svc2rules.backends import RenderOptions
from svc2rules.backends.iptables.apply import IptablesApplier
from svc2rules.backends.iptables.model import IptablesChange, IptablesState
from svc2rules.compile import Compilation, compile_sources
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.ir import Plan
from svc2rules.load import Source
from svc2rules.syntax.xtables import Table
from svc2rules.syntax.xtables.fake import XtablesEmulator
from tests.conftest import endpoint, endpoint_slice, service

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def web(i: int, endpoints: tuple[str, ...] | None = None, **spec: Any) -> list[dict[str, Any]]:
    """Service `web{i}` (ClusterIP 172.30.0.{i}, port 80) with its EndpointSlice."""
    eps = endpoints if endpoints is not None else (f"10.180.{i}.1", f"10.180.{i}.2")
    spec.setdefault("clusterIP", f"172.30.0.{i}")
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    return [
        service(f"web{i}", "shop", **spec),
        endpoint_slice(
            f"web{i}", "shop", [endpoint(ip) for ip in eps], ports=[{"name": "http", "port": 8080}]
        ),
    ]


def cluster(services: int, **changes: tuple[str, ...]) -> list[dict[str, Any]]:
    """`services` Services web1..webN; `changes` gives some (`web3=(...)`) other endpoints."""
    out: list[dict[str, Any]] = []
    for i in range(1, services + 1):
        out += web(i, changes.get(f"web{i}"))
    return out


def compiled(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> Compilation:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return compile_sources([Source("cluster.json", data)], config, fingerprint=True)


def plan_of(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> Plan:
    return compiled(objects, config).plan()


class Host:
    """A fake host with the xtables tools, and the applier driven as the engine drives it."""

    def __init__(self, options: RenderOptions[None] | None = None) -> None:
        self.runner = FakeRunner(XtablesEmulator)
        self.kernel = self.runner.emulator(XtablesEmulator)
        self.applier = IptablesApplier(options or RenderOptions())
        self.state: IptablesState | None = None
        self.generations = iter(f"{n}-gen" for n in range(1, 1000))

    def plan(self, objects: list[dict[str, Any]], *, trusted: bool | None = None) -> IptablesChange:
        """What `apply` would write for `objects` (trusted: whether the state matches the kernel,
        asked of the marker as the engine does when None)."""
        if trusted is None:
            trusted = self.state is not None and self.applier.marker(
                self.runner, self.state
            ) == self.state.get("generation")
        old = self.state if trusted else self.applier.read_live(self.runner)
        return self.applier.plan_compiled(
            self.runner, old, trusted, compiled(objects), next(self.generations)
        )

    def apply(self, objects: list[dict[str, Any]], *, trusted: bool | None = None) -> IptablesChange:
        change = self.plan(objects, trusted=trusted)
        if change.kind != "none":
            self.applier.validate(self.runner, change)
            self.applier.load(self.runner, change)
            assert change.new_state is not None
            self.state = change.new_state
        elif self.state is not None:
            self.state = cast(IptablesState, {**self.state, **(change.state_update or {})})
        return change

    def tables(self) -> dict[str, Table]:
        return self.kernel.tables(IPFamily.IPv4)

    def ours(self) -> str:
        return self.applier.dump_live(self.runner)
