"""Health, as kube-proxy tells it (pkg/proxy/healthcheck).

* `ProxyHealth` (proxy_health.go): the proxy is healthy unless an update it was told about
  (`queued`) has waited longer than the health timeout without a successful sync (`updated`);
  /livez answers that, /healthz also answers 503 while the node is being deleted (its object
  has a deletionTimestamp or the cluster autoscaler's ToBeDeletedByClusterAutoscaler taint).
* `ServiceHealth` (service_health.go): one HTTP server per Service with
  `externalTrafficPolicy: Local` and a `healthCheckNodePort`, answering 200 with the number of
  local ready endpoints (distinct IPs) when there are some and the proxy is healthy, else 503,
  with kube-proxy's body; opened and closed as Services come and go. Load balancers probe it to
  know which nodes have endpoints.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from svc2rules.agent import http
from svc2rules.agent.http import Response
from svc2rules.resolve.plan import ServiceResolution

TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
_JSON_HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}


def go_time(seconds: float) -> str:
    """A time as Go's time.Time prints it with %q (UTC, nanoseconds without trailing zeros)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    fraction = f"{moment.microsecond * 1000:09d}".rstrip("0")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


@dataclass
class ProxyHealth:
    """When the rules were last brought up to date, and whether an update waits too long."""

    timeout: float
    clock: Callable[[], float] = time.time
    last_updated: float | None = None
    oldest_queued: float | None = None
    node_eligible: bool = True  # while starting, and until the node's object says otherwise

    def queued(self) -> None:
        if self.oldest_queued is None:
            self.oldest_queued = self.clock()

    def updated(self) -> None:
        self.oldest_queued = None
        self.last_updated = self.clock()

    def healthy(self) -> bool:
        # Starting (nothing synced yet) or fully synced; else the oldest update is not late yet.
        if self.last_updated is None or self.oldest_queued is None:
            return True
        return self.clock() - self.oldest_queued < self.timeout

    def sync_node(self, node: Mapping[str, Any] | None) -> None:
        """The node's object (None: deleted)."""
        if node is None:
            self.node_eligible = False
            return
        metadata = node.get("metadata") or {}
        taints = (node.get("spec") or {}).get("taints") or []
        self.node_eligible = not metadata.get("deletionTimestamp") and not any(
            isinstance(taint, dict) and taint.get("key") == TO_BE_DELETED_TAINT for taint in taints
        )

    def answer(self, *, node: bool) -> Response:
        """/healthz (`node`: the node's eligibility counts too) or /livez."""
        now = self.clock()
        healthy = self.healthy()
        eligible = self.node_eligible
        if node:
            healthy = healthy and eligible
        # As kube-proxy: a healthy answer says "updated now" (older releases' meaning).
        last = now if healthy else (self.last_updated or 0.0)
        body = f'{{"lastUpdated": "{go_time(last)}","currentTime": "{go_time(now)}"'
        body += f', "nodeEligible": {json.dumps(eligible)}}}' if node else "}"
        return Response(200 if healthy else 503, body.encode(), dict(_JSON_HEADERS))


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A Service's health-check node port and its local ready endpoint count."""

    port: int
    local_endpoints: int


def health_check_of(resolution: ServiceResolution | None) -> HealthCheck | None:
    """kube-proxy's view: the Service's healthCheckNodePort (externalTrafficPolicy Local) and the
    distinct IPs of its local ready endpoints, over all its ports."""
    if resolution is None:
        return None
    port = next(
        (sp.health_check_node_port for sp in resolution.service_ports if sp.health_check_node_port), 0
    )
    if not port:
        return None
    ips = {ep.ip for sp in resolution.service_ports for ep in sp.local_endpoints if ep.ready and ep.is_local}
    return HealthCheck(port, len(ips))


def service_body(namespace: str, name: str, count: int, proxy_healthy: bool) -> bytes:
    """kube-proxy's body, byte for byte (a dedented, trimmed Go template)."""
    return (
        "{\n"
        '\t"service": {\n'
        f'\t\t"namespace": {json.dumps(namespace)},\n'
        f'\t\t"name": {json.dumps(name)}\n'
        "\t},\n"
        f'\t"localEndpoints": {count},\n'
        f'\t"serviceProxyHealthy": {json.dumps(proxy_healthy)}\n'
        "}"
    ).encode()


@dataclass
class ServiceHealth:
    """The health-check servers: one per Service (namespace, name) with a health-check port."""

    proxy: ProxyHealth
    addresses: tuple[str, ...] = ("0.0.0.0",)
    log: Callable[[str], None] = lambda _: None
    checks: dict[tuple[str, str], HealthCheck] = field(default_factory=dict)
    servers: dict[tuple[str, str], tuple[int, list[asyncio.Server]]] = field(default_factory=dict)

    async def sync(self, updates: Mapping[tuple[str, str], HealthCheck | None]) -> None:
        """Services whose health check changed (None: it has none any more)."""
        for ref, check in updates.items():
            if check is None:
                self.checks.pop(ref, None)
            else:
                self.checks[ref] = check
        await self._open_and_close(updates.keys())

    async def _open_and_close(self, refs: Iterable[tuple[str, str]]) -> None:
        for ref in refs:
            check = self.checks.get(ref)
            opened = self.servers.get(ref)
            if opened is not None and (check is None or opened[0] != check.port):
                self.log(f"closing the health check of Service {ref[0]}/{ref[1]} on port {opened[0]}")
                await _close(opened[1])
                del self.servers[ref]
            if check is not None and ref not in self.servers:
                await self._open(ref, check.port)

    async def _open(self, ref: tuple[str, str], port: int) -> None:
        servers: list[asyncio.Server] = []
        try:
            for address in self.addresses:
                servers.append(await http.start(self._handler(ref), address, port))
        except OSError as exc:
            await _close(servers)
            # As kube-proxy: logged, and tried again when the Service next changes.
            self.log(
                f"error: cannot open the health check of Service {ref[0]}/{ref[1]} on port {port}: "
                f"{exc.strerror or exc}"
            )
            return
        self.log(f"serving the health check of Service {ref[0]}/{ref[1]} on port {port}")
        self.servers[ref] = (port, servers)

    def _handler(self, ref: tuple[str, str]) -> http.Handler:
        def answer(_: str) -> Response:
            check = self.checks.get(ref)
            count = check.local_endpoints if check is not None else 0
            healthy = self.proxy.healthy()
            status = 200 if count and healthy else 503
            return Response(status, service_body(ref[0], ref[1], count, healthy), dict(_JSON_HEADERS))

        return answer

    async def close(self) -> None:
        for _, servers in self.servers.values():
            await _close(servers)
        self.servers.clear()


async def _close(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
