"""`apply --textfile DIR`: a one-shot apply writes the metrics `run` serves, in node_exporter's
textfile collector format, for a good run and for a refused one (real kernel, in a namespace)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.apply.helpers import Host, drop_host, new_host, require_root, small_cluster
from tests.conftest import service, to_yaml

pytestmark = pytest.mark.root


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    require_root()
    the_host = new_host(tmp_path, "textfile")
    try:
        yield the_host
    finally:
        drop_host(the_host)


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, by name and labels (the parser rejects a malformed file)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_apply_writes_its_metrics_for_node_exporter(host: Host, tmp_path: Path, backend: str) -> None:
    manifests, metrics = tmp_path / "manifests", tmp_path / "textfile"
    manifests.mkdir()
    metrics.mkdir()
    good = manifests / "cluster.yaml"
    good.write_text(small_cluster())
    proc = host.cli("apply", "-f", str(good), "--textfile", str(metrics), backend=backend)
    assert proc.returncode == 0, proc.stderr
    written = metrics / "svc2rules.prom"
    samples = _samples(written)
    assert samples[("kubeproxy_sync_proxy_rules_last_timestamp_seconds", ())] > 0
    assert samples[("kubeproxy_sync_proxy_rules_duration_seconds_count", ())] == 1
    assert samples[("svc2rules_kernel_write_duration_seconds_count", ())] == 1
    assert not any(name.endswith(".tmp") for name in (p.name for p in metrics.iterdir()))

    # A refused input: nothing applied, the failure counted by its reason, no sync recorded.
    bad = manifests / "bad.yaml"
    bad.write_text(to_yaml(service("bad", "shop", clusterIP="172.30.0.50", ports=[{"name": "x", "port": 0}])))
    proc = host.cli("apply", "-f", str(manifests), "--textfile", str(metrics), backend=backend)
    assert proc.returncode == 2, proc.stderr
    samples = _samples(written)
    failures = [
        value
        for (name, labels), value in samples.items()
        if name.endswith("_sync_failures_total") and ("reason", "invalid") in labels
    ]
    assert failures == [1.0], samples
    assert samples[("kubeproxy_sync_proxy_rules_duration_seconds_count", ())] == 0

    # --skip-invalid: applied without it, and the object left out is counted.
    proc = host.cli(
        "apply", "-f", str(manifests), "--skip-invalid", "--textfile", str(metrics), backend=backend
    )
    assert proc.returncode == 0, proc.stderr
    samples = _samples(written)
    assert samples[("svc2rules_invalid_objects_skipped_total", ())] == 1
    assert samples[("kubeproxy_sync_proxy_rules_duration_seconds_count", ())] == 1
