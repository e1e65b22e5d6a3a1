"""`svc2rules run` on the real kernel, in a throw-away network namespace: a watched folder and
watch-event streams followed into the kernel, drift repaired by the periodic resync, invalid
objects left out, the load balancers' health checks, /healthz, /livez and /metrics over real
sockets. Every wait is a poll with a deadline (a bound on a hang, never a speed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apply.helpers import CLI, Host, drop_host, new_host, require_root
from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml

pytestmark = pytest.mark.root

DEADLINE = 120.0
HTTP_CLIENT = """
import json, sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(), "type": r.headers["Content-Type"]}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(), "type": e.headers["Content-Type"]}))
except (ConnectionError, urllib.error.URLError) as e:
    print(json.dumps({"status": None, "body": str(e), "type": None}))
"""


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    require_root()
    the_host = new_host(tmp_path, "run")
    try:
        yield the_host
    finally:
        drop_host(the_host)


def poll(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


class Running:
    """`svc2rules run` in the host's namespace, its stderr collected line by line."""

    def __init__(self, host: Host, *args: str, env: dict[str, str] | None = None) -> None:
        argv = ["ip", "netns", "exec", host.name, CLI, "run", "--state-dir", str(host.state_dir), *args]
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        with self.lock:
            return any(text in line for line in self.lines)

    def log(self) -> str:
        with self.lock:
            return "\n".join(self.lines)

    def wait_said(self, text: str) -> None:
        poll(
            f"run to say {text!r}; it said:\n{self.log()}",
            lambda: self.said(text) or self.proc.poll() is not None,
        )
        assert self.said(text), self.log()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=DEADLINE)


def http(host: Host, url: str) -> dict[str, Any]:
    out = host.run([sys.executable, "-c", HTTP_CLIENT, url]).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def web(endpoints: list[str], *, name: str = "web", vip: str = "172.30.0.41", **spec: Any) -> str:
    return to_yaml(
        service(
            name, "shop", clusterIP=vip, ports=[{"name": "http", "port": 80, "targetPort": 8080}], **spec
        ),
        endpoint_slice(
            name, "shop", [endpoint(ip) for ip in endpoints], ports=[{"name": "http", "port": 8080}]
        ),
    )


def rules(host: Host, backend: str) -> str:
    return host.ours(backend)


def replace_file(path: Path, text: str) -> None:
    """As a deployment tool writes: a temporary file renamed over the old one."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_run_follows_a_watched_folder_into_the_kernel(
    host: Host, tmp_path: Path, running: list[Running], backend: str
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1", "10.180.0.2"]))
    (folder / "api.yaml").write_text(web(["10.180.1.1"], name="api", vip="172.30.0.42"))
    run = Running(
        host, "--backend", backend, "-f", str(folder), "--min-sync-period", "0", *NODE_ARGS, *_NO_HTTP
    )
    running.append(run)
    poll(
        "the first sync",
        lambda: "10.180.0.2" in rules(host, backend) and "10.180.1.1" in rules(host, backend),
    )

    (folder / "db.yaml").write_text(web(["10.180.2.1"], name="db", vip="172.30.0.43"))
    poll("a new file's Service in the kernel", lambda: "10.180.2.1" in rules(host, backend))

    before = set(rules(host, backend).splitlines())
    replace_file(folder / "web.yaml", web(["10.180.0.1", "10.180.0.9"]))
    poll("the changed endpoint in the kernel", lambda: "10.180.0.9" in rules(host, backend))
    after = set(rules(host, backend).splitlines())
    changed = before ^ after
    # Only web's rules or elements changed: lines naming it or its old and new endpoint (the
    # hairpin set's elements), and for iptables the declarations of its endpoint chains.
    ours = ("shop/web", "10.180.0.2", "10.180.0.9", " :SVC2R-")
    assert changed and all(any(mark in line for mark in ours) for line in changed), changed
    run.wait_said("applied (incremental")

    (folder / "bad.yaml").write_text(
        to_yaml(service("bad", "shop", clusterIP="172.30.0.50", ports=[{"name": "x", "port": 0}]))
    )
    run.wait_said("bad.yaml: Service shop/bad: spec.ports[0].port")
    assert "the object is left out" in run.log()
    replace_file(folder / "api.yaml", web(["10.180.1.7"], name="api", vip="172.30.0.42"))
    poll("a change beside an invalid file applied", lambda: "10.180.1.7" in rules(host, backend))
    assert "10.180.0.9" in rules(host, backend) and "10.180.2.1" in rules(host, backend)

    (folder / "db.yaml").unlink()
    poll("a removed file's Service gone", lambda: "10.180.2.1" not in rules(host, backend))
    (folder / "bad.yaml").unlink()
    assert run.stop() == 0, run.log()
    assert "stopping: the rules stay in the kernel" in run.log()
    assert "10.180.0.9" in rules(host, backend)

    # The state run wrote is what a one-shot apply and diff find.
    applied = host.cli("apply", "-f", str(folder), "--skip-invalid", backend=backend)
    assert applied.returncode == 0, applied.stderr
    assert "nothing written" in applied.stderr or "not recompiled" in applied.stderr, applied.stderr
    assert host.cli("diff", "-f", str(folder), backend=backend).returncode == 0


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_the_sync_period_repairs_what_someone_removed(
    host: Host, tmp_path: Path, running: list[Running], backend: str
) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1"]))
    run = Running(host, "--backend", backend, "-f", str(folder), "--sync-period", "2s", *NODE_ARGS, *_NO_HTTP)
    running.append(run)
    poll("the first sync", lambda: "10.180.0.1" in rules(host, backend))
    if backend == "nftables":
        host.run(["nft", "delete", "table", "ip", "svc2rules"])
    else:
        chain = next(
            line.split()[1] for line in host.save("nat").splitlines() if line.startswith("-A SVC2R-SEP-")
        )
        host.run(["iptables", "-t", "nat", "-F", chain])
    # What the flushed chain (or the deleted table) held: the endpoint's DNAT.
    dnat = "10.180.0.1 . 8080" if backend == "nftables" else "--to-destination 10.180.0.1:8080"
    assert dnat not in rules(host, backend)
    poll("the resync to repair it", lambda: dnat in rules(host, backend))
    run.wait_said("resync: repaired")


def test_a_stream_of_changes_does_not_put_the_periodic_resync_off(
    host: Host, tmp_path: Path, running: list[Running]
) -> None:
    """As kube-proxy's full sync (an hour after the last full one, whatever partial syncs ran
    between): a chain flushed behind our back is repaired while changes keep coming."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1"]))
    (folder / "api.yaml").write_text(web(["10.180.1.1"], name="api", vip="172.30.0.42"))
    run = Running(
        host, "--backend", "nftables", "-f", str(folder), "--sync-period", "3s", "--min-sync-period", "0",
        *NODE_ARGS, *_NO_HTTP,
    )  # fmt: skip
    running.append(run)
    dnat = "numgen random mod 1 map @service-tcp-endpoints-1"
    poll(
        "the first sync", lambda: "10.180.1.1" in rules(host, "nftables") and dnat in rules(host, "nftables")
    )
    host.run(["nft", "flush", "chain", "ip", "svc2rules", "service-tcp-pool-1"])
    assert dnat not in rules(host, "nftables")
    # A change every 0.3 s, well within the sync period (pacing only: the verdict is the poll's).
    changes = iter(range(1, 10**6))

    def changed_and_repaired() -> bool:
        address = f"10.180.1.{next(changes) % 200 + 2}"
        replace_file(folder / "api.yaml", web([address], name="api", vip="172.30.0.42"))
        time.sleep(0.3)
        return dnat in rules(host, "nftables")

    poll("the flushed chain repaired while changes keep coming", changed_and_repaired)
    run.wait_said("resync: repaired")
    assert run.stop() == 0, run.log()


def test_a_restarted_run_checks_the_kernel_whole_when_the_last_check_is_a_period_old(
    host: Host, tmp_path: Path, running: list[Running]
) -> None:
    """The first sync of a run is a one-shot apply's: when the state's last full check is older
    than --sync-period, it reads our objects back and repairs them (kube-proxy starts with a
    full sync)."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1"]))
    first = Running(host, "--backend", "nftables", "-f", str(folder), *NODE_ARGS, *_NO_HTTP)
    running.append(first)
    dnat = "numgen random mod 1 map @service-tcp-endpoints-1"
    poll("the first sync", lambda: dnat in rules(host, "nftables"))
    first.wait_said("applied (")
    assert first.stop() == 0, first.log()
    host.run(["nft", "flush", "chain", "ip", "svc2rules", "service-tcp-pool-1"])
    assert dnat not in rules(host, "nftables")
    # A precondition, not a verdict: the last full check (the first run's) is over 2 s old.
    stopped = time.monotonic()
    while time.monotonic() - stopped < 2.5:
        time.sleep(0.1)
    second = Running(
        host, "--backend", "nftables", "-f", str(folder), "--sync-period", "2s", *NODE_ARGS, *_NO_HTTP
    )
    running.append(second)
    second.wait_said("periodic full check")
    poll("the flushed chain repaired by the first sync", lambda: dnat in rules(host, "nftables"))
    assert second.stop() == 0, second.log()


def test_run_follows_kubectl_watch_event_streams(host: Host, tmp_path: Path, running: list[Running]) -> None:
    services, slices = tmp_path / "services.events", tmp_path / "endpointslices.events"
    os.mkfifo(services)
    os.mkfifo(slices)
    run = Running(
        host, "--backend", "nftables", "--events", str(services), "--events", str(slices),
        "--min-sync-period", "0", *NODE_ARGS, *_NO_HTTP,
    )  # fmt: skip
    running.append(run)
    to_services = open(services, "wb", buffering=0)  # noqa: SIM115 - written step by step
    to_slices = open(slices, "wb", buffering=0)  # noqa: SIM115
    try:
        web_service = service("web", "shop", clusterIP="172.30.0.41", ports=[{"name": "http", "port": 80}])
        api_service = service("api", "shop", clusterIP="172.30.0.42", ports=[{"name": "http", "port": 80}])
        web_slice = endpoint_slice(
            "web", "shop", [endpoint("10.180.0.1")], ports=[{"name": "http", "port": 8080}]
        )
        api_slice = endpoint_slice(
            "api", "shop", [endpoint("10.180.1.1")], ports=[{"name": "http", "port": 8080}]
        )
        bookmark = {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "4242"}}
        to_services.write(_events(("ADDED", web_service), ("ADDED", api_service), ("BOOKMARK", bookmark)))
        to_slices.write(
            _events(("ADDED", web_slice), ("DELETED", endpoint_slice("gone", "shop")), ("ADDED", api_slice))
        )
        poll("the listed objects in the kernel", lambda: "10.180.1.1" in rules(host, "nftables"))
        moved = endpoint_slice(
            "web", "shop", [endpoint("10.180.0.7")], ports=[{"name": "http", "port": 8080}]
        )
        to_slices.write(_events(("MODIFIED", moved)))
        poll("a MODIFIED slice in the kernel", lambda: "10.180.0.7" in rules(host, "nftables"))
        assert "10.180.0.1" not in rules(host, "nftables")
        to_services.write(_events(("DELETED", api_service)))
        poll("a DELETED Service gone", lambda: "shop/api" not in rules(host, "nftables"))
        bad = service("bad", "shop", clusterIP="172.30.0.50", ports=[{"name": "x", "port": 0}])
        to_services.write(_events(("ADDED", bad)))
        run.wait_said(f"{services}: Service shop/bad: Service shop/bad: spec.ports[0].port")
        assert "10.180.0.7" in rules(host, "nftables")
    finally:
        to_services.close()
        to_slices.close()
    assert run.stop() == 0, run.log()


def _events(*events: tuple[str, dict[str, Any]]) -> bytes:
    """kubectl's `--output-watch-events -o json` output: indented JSON objects, one after another."""
    return b"".join(json.dumps({"type": t, "object": o}, indent=4).encode() + b"\n" for t, o in events)


def _lb(name: str, vip: str, health_port: int, endpoint_node: str) -> str:
    return to_yaml(
        service(
            name,
            "shop",
            type="LoadBalancer",
            clusterIP=vip,
            externalTrafficPolicy="Local",
            healthCheckNodePort=health_port,
            ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": health_port - 2000}],
        ),
        endpoint_slice(
            name, "shop", [endpoint("10.180.3.1", endpoint_node)], ports=[{"name": "http", "port": 8080}]
        ),
    )


def test_health_checks_healthz_livez_and_metrics(host: Host, tmp_path: Path, running: list[Running]) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "local.yaml").write_text(_lb("local", "172.30.0.61", 32001, "node1"))
    (folder / "remote.yaml").write_text(_lb("remote", "172.30.0.62", 32002, "node2"))
    # An nft that fails while a flag file exists: the kernel writes can be made to fail.
    flag = tmp_path / "break-nft"
    wrapper = tmp_path / "bin" / "nft"
    wrapper.parent.mkdir()
    real = subprocess.run(
        ["sh", "-c", "command -v nft || echo /usr/sbin/nft"], capture_output=True, text=True
    )
    wrapper.write_text(
        f'#!/bin/sh\n[ -e {flag} ] && {{ echo "nft: broken for the test" >&2; exit 1; }}\nexec {real.stdout.strip()} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}
    run = Running(
        host, "--backend", "nftables", "-f", str(folder), "--min-sync-period", "0", "--health-timeout", "2s",
        "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249", *NODE_ARGS,
        env=env,
    )  # fmt: skip
    running.append(run)
    poll("the health check servers", lambda: http(host, "http://127.0.0.1:32002/")["status"] is not None)
    local = http(host, "http://127.0.0.1:32001/")
    assert local["status"] == 200 and local["type"] == "application/json"
    assert json.loads(local["body"]) == {
        "service": {"namespace": "shop", "name": "local"},
        "localEndpoints": 1,
        "serviceProxyHealthy": True,
    }
    remote = http(host, "http://127.0.0.1:32002/")
    assert remote["status"] == 503 and json.loads(remote["body"])["localEndpoints"] == 0

    healthz, livez = http(host, "http://127.0.0.1:10256/healthz"), http(host, "http://127.0.0.1:10256/livez")
    assert healthz["status"] == 200 and json.loads(healthz["body"])["nodeEligible"] is True
    assert livez["status"] == 200 and set(json.loads(livez["body"])) == {"lastUpdated", "currentTime"}
    metrics = http(host, "http://127.0.0.1:10249/metrics")
    assert metrics["status"] == 200
    for name in (
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_network_programming_duration_seconds_bucket",
        'kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"} 1.0',
        "svc2rules_kernel_write_duration_seconds_bucket",
        "svc2rules_input_read_duration_seconds_bucket",
        "svc2rules_invalid_objects_skipped_total",
    ):
        assert name in metrics["body"], name

    (folder / "remote.yaml").unlink()
    poll(
        "the removed Service's health check port closed",
        lambda: http(host, "http://127.0.0.1:32002/")["status"] is None,
    )

    flag.touch()
    replace_file(folder / "local.yaml", _lb("local", "172.30.0.61", 32001, "node2"))
    poll(
        "/healthz unhealthy once the kernel writes fail",
        lambda: http(host, "http://127.0.0.1:10256/healthz")["status"] == 503,
    )
    assert http(host, "http://127.0.0.1:10256/livez")["status"] == 503
    failures = http(host, "http://127.0.0.1:10249/metrics")["body"]
    assert "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0.0" not in failures
    flag.unlink()
    poll(
        "/healthz healthy again once a sync succeeds",
        lambda: http(host, "http://127.0.0.1:10256/healthz")["status"] == 200,
    )
    # The Service's one endpoint moved to another node: the load balancer is told 503.
    poll(
        "the health check follows the endpoints",
        lambda: http(host, "http://127.0.0.1:32001/")["status"] == 503,
    )
    assert run.stop() == 0, run.log()


def _nft_wrapper(folder: Path, *, log: Path | None = None, fail_while: Path | None = None) -> dict[str, str]:
    """The environment of a run whose `nft` is a script that logs its arguments and fails while
    a flag file exists, then runs the real nft."""
    real = subprocess.run(
        ["sh", "-c", "command -v nft || echo /usr/sbin/nft"], capture_output=True, text=True
    ).stdout.strip()
    wrapper = folder / "nft"
    folder.mkdir(exist_ok=True)
    lines = ["#!/bin/sh"]
    if log is not None:
        lines.append(f'echo "$*" >> {log}')
    if fail_while is not None:
        lines.append(f'[ -e {fail_while} ] && {{ echo "nft: broken for the test" >&2; exit 1; }}')
    lines.append(f'exec {real} "$@"')
    wrapper.write_text("\n".join(lines) + "\n")
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}


def test_a_change_is_one_nft_run_without_a_check_pass(
    host: Host, tmp_path: Path, running: list[Running]
) -> None:
    """`nft -f` takes a change whole or refuses it whole: run skips the `nft -c` pass that a
    one-shot apply makes (as kube-proxy, one `nft -f` per sync), and a change that the kernel
    refuses leaves the rules as they were."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1"]))
    calls, broken = tmp_path / "nft-calls", tmp_path / "break-nft"
    env = _nft_wrapper(tmp_path / "bin", log=calls, fail_while=broken)
    run = Running(
        host, "--backend", "nftables", "-f", str(folder), "--min-sync-period", "0", *NODE_ARGS, *_NO_HTTP,
        env=env,
    )  # fmt: skip
    running.append(run)
    poll("the first sync", lambda: "10.180.0.1" in rules(host, "nftables"))
    run.wait_said("applied (")
    calls.write_text("")
    replace_file(folder / "web.yaml", web(["10.180.0.1", "10.180.0.5"]))
    poll("the changed endpoint in the kernel", lambda: "10.180.0.5" in rules(host, "nftables"))
    run.wait_said("applied (incremental")
    made = calls.read_text().splitlines()
    assert [call for call in made if call.startswith("-f")] == ["-f -"], made
    assert not [call for call in made if call.startswith("-c")], made

    before = rules(host, "nftables")
    broken.touch()
    replace_file(folder / "web.yaml", web(["10.180.0.1", "10.180.0.6"]))
    run.wait_said("nft: broken for the test")
    assert rules(host, "nftables") == before
    broken.unlink()
    poll("the change applied once nft works again", lambda: "10.180.0.6" in rules(host, "nftables"))
    assert "10.180.0.5" not in rules(host, "nftables")
    assert run.stop() == 0, run.log()


_KUBE_PROXY_CONFIG = (
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n"
    "nftables:\n  masqueradeAll: {}\n"
)


def test_sighup_reads_the_config_again(host: Host, tmp_path: Path, running: list[Running]) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(web(["10.180.0.1"]))
    config = tmp_path / "kube-proxy.yaml"
    config.write_text(_KUBE_PROXY_CONFIG.format("false"))
    run = Running(
        host, "--backend", "nftables", "-f", str(folder), "--config", str(config), "--min-sync-period", "0",
        *NODE_ARGS, *_NO_HTTP,
    )  # fmt: skip
    running.append(run)
    poll("the first sync", lambda: "10.180.0.1" in rules(host, "nftables"))
    assert '"masqueradeAll"' not in rules(host, "nftables")

    config.write_text(_KUBE_PROXY_CONFIG.format("true"))
    run.proc.send_signal(signal.SIGHUP)
    poll("the new config's rules", lambda: '"masqueradeAll"' in rules(host, "nftables"))
    run.wait_said("the config changed: compiling everything again")

    # A config that does not read: said, and the rules stay those of the last good one.
    config.write_text("nftables: [\n")
    run.proc.send_signal(signal.SIGHUP)
    run.wait_said("error: the config was not changed")
    assert '"masqueradeAll"' in rules(host, "nftables") and run.proc.poll() is None
    assert run.stop() == 0, run.log()


_NO_HTTP = ("--healthz-bind-address", "", "--metrics-bind-address", "")
