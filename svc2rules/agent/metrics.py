"""Prometheus metrics: kube-proxy's names where the meaning is the same
(pkg/proxy/metrics), `svc2rules_*` for ours. One registry per process (never the library's
global one), served on /metrics by `run` and written in node_exporter's textfile format by
`apply --textfile DIR`."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# kube-proxy's buckets: exponential from 1 ms, doubling, 15 buckets (about 16 s).
SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
# kube-proxy's network programming buckets: 0.25 s steps to 1 min, then to 5 min.
PROGRAMMING_BUCKETS = (
    *(0.25 * i for i in range(1, 5)),
    *(1.0 * i for i in range(2, 31)),
    *(5.0 * i for i in range(7, 13)),
    *(30.0 * i for i in range(3, 11)),
)
TEXTFILE_NAME = "svc2rules.prom"


class Metrics:
    """Every metric of a run (or of one apply)."""

    def __init__(self, backend: str) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.full_sync_duration = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.partial_sync_duration = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.last_sync = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            registry=registry,
        )
        self.last_queued = Gauge(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            registry=registry,
        )
        self.programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds (here: from the change being seen "
            "in a watched file or event stream to its rules being in the kernel)",
            buckets=PROGRAMMING_BUCKETS,
            registry=registry,
        )
        self.no_local_endpoints = Gauge(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            ["traffic_policy"],
            registry=registry,
        )
        self.service_changes = Counter(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            registry=registry,
        )
        self.endpoint_changes = Counter(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            registry=registry,
        )
        # kube-proxy counts refused kernel writes under its mode's name.
        failure_name = (
            "kubeproxy_sync_proxy_rules_nftables_sync_failures"
            if backend == "nftables"
            else "kubeproxy_sync_proxy_rules_iptables_restore_failures"
        )
        self.restore_failures = Counter(
            failure_name, "Cumulative proxy rules kernel write failures", registry=registry
        )
        self.healthz = Counter(
            "kubeproxy_proxy_healthz", "Cumulative proxy healthz HTTP status", ["code"], registry=registry
        )
        self.livez = Counter(
            "kubeproxy_proxy_livez", "Cumulative proxy livez HTTP status", ["code"], registry=registry
        )
        # Ours.
        self.sync_failures = Counter(
            "svc2rules_sync_failures",
            "Syncs that did not bring the rules up to date, by reason",
            ["reason"],
            registry=registry,
        )
        self.invalid_skipped = Counter(
            "svc2rules_invalid_objects_skipped",
            "Invalid objects left out of the input (one per object each time its source changed)",
            registry=registry,
        )
        self.invalid_objects = Gauge(
            "svc2rules_invalid_objects",
            "Problems of the current input whose objects are left out",
            registry=registry,
        )
        self.empty_input = Counter(
            "svc2rules_empty_input_kept_rules",
            "Times the input had no Service at all and the rules in the kernel were kept",
            registry=registry,
        )
        self.input_empty = Gauge(
            "svc2rules_input_empty", "1 while the input has no Service (rules kept)", registry=registry
        )
        self.kernel_write = Histogram(
            "svc2rules_kernel_write_duration_seconds",
            "Time the kernel write (the loader process) took",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.input_read = Histogram(
            "svc2rules_input_read_duration_seconds",
            "Time reading and compiling the changed input took",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.service_ports = Gauge(
            "svc2rules_service_ports",
            "Service ports in the rules (per Service, port and IP family)",
            registry=registry,
        )
        self.endpoints = Gauge(
            "svc2rules_endpoints",
            "Endpoints the rules balance over, summed over service ports",
            registry=registry,
        )
        self.health_check_servers = Gauge(
            "svc2rules_health_check_servers", "Service health-check ports being served", registry=registry
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def write_textfile(self, folder: Path) -> Path:
        """node_exporter's textfile collector format, written atomically."""
        path = folder / TEXTFILE_NAME
        write_to_textfile(str(path), self.registry)
        return path


def one_shot(
    backend: str,
    *,
    elapsed: float,
    timings: dict[str, float],
    written: bool,
    full: bool,
    skipped: int,
    failure: str | None,
) -> Metrics:
    """The metrics of one `apply` (for `--textfile`): what this run did."""
    metrics = Metrics(backend)
    if failure is None:
        metrics.sync_duration.observe(elapsed)
        (metrics.full_sync_duration if full else metrics.partial_sync_duration).observe(elapsed)
        metrics.last_sync.set_to_current_time()
    else:
        metrics.sync_failures.labels(reason=failure).inc()
        if failure == "kernel":
            metrics.restore_failures.inc()
    if written and "load" in timings:
        metrics.kernel_write.observe(timings["load"])
    if "compile" in timings:
        metrics.input_read.observe(timings["compile"])
    metrics.invalid_skipped.inc(skipped)
    metrics.invalid_objects.set(skipped)
    return metrics
