"""apply / diff / cleanup on the real kernel, each test in its own network namespace."""

from __future__ import annotations

import fcntl
import itertools
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .helpers import BACKENDS, Host, small_cluster

pytestmark = pytest.mark.root

FOREIGN_IPTABLES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A OUTPUT -o lo -j ACCEPT
COMMIT
"""

FOREIGN_NFT = """table inet foreign {
	set blocked { type ipv4_addr; elements = { 203.0.113.9 } }
	chain input { type filter hook input priority 10; policy accept; ip saddr @blocked drop; }
	chain post { type nat hook postrouting priority 110; policy accept; oifname "eth9" masquerade; }
}
"""


class NftMonitor:
    """`nft monitor` in a host, and what the kernel's ruleset went through between two marks.

    A mark is a table added and deleted in one transaction; waiting for the monitor to print it
    replaces guessing how long the monitor takes to subscribe or to print what happened before.
    """

    MARK_DEADLINE = 60.0

    def __init__(self, host: Host) -> None:
        self.host = host
        self.proc: subprocess.Popen[str] = host.popen(["nft", "monitor"])
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._names = (f"s2rmark{os.getpid()}x{i}" for i in itertools.count())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._start = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def _mark(self) -> str:
        name = next(self._names)
        self.host.run(["nft", "-f", "-"], stdin=f"add table ip {name}\ndelete table ip {name}\n")
        return name

    def _printed(self, name: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: f"delete table ip {name}" in self.lines, timeout)

    def start(self) -> None:
        """Returns once the monitor is listening (a mark came through), after a mark of its own."""
        deadline = time.monotonic() + self.MARK_DEADLINE
        while not self._printed(self._mark(), 0.2):
            assert self.proc.poll() is None, f"nft monitor exited {self.proc.returncode}"
            assert time.monotonic() < deadline, "nft monitor never printed an event"
        self._start = self._mark()
        assert self._printed(self._start, self.MARK_DEADLINE), self.lines

    def events(self) -> str:
        """What the monitor printed since start(), the marks' own transactions left out."""
        end = self._mark()
        assert self._printed(end, self.MARK_DEADLINE), self.lines
        with self._changed:
            lines = list(self.lines)
        first = lines.index(f"delete table ip {self._start}") + 1
        while not lines[first].startswith("# new generation"):  # the rest of the mark's transaction
            first += 1
        return "\n".join(lines[first + 1 : lines.index(f"add table ip {end}")])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=60)
        self._reader.join(10)


@contextmanager
def nft_monitor(host: Host) -> Iterator[NftMonitor]:
    monitor = NftMonitor(host)
    try:
        monitor.start()
        yield monitor
    finally:
        monitor.close()


def write(folder: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def preload_foreign(host: Host) -> tuple[str, str]:
    host.run(["iptables-restore", "-w"], stdin=FOREIGN_IPTABLES)
    host.run(["nft", "-f", "-"], stdin=FOREIGN_NFT)
    return host.foreign_iptables(), host.run(["nft", "list", "table", "inet", "foreign"]).stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_ownership_foreign_rules_untouched(host: Host, manifests: Path, backend: str) -> None:
    ipt_before, nft_before = preload_foreign(host)
    whole_before = host.run(["iptables-save"]).stdout
    first = write(manifests, small_cluster())
    changed = write(manifests, small_cluster(endpoints=("10.180.0.1", "10.180.0.3")), "changed.yaml")

    def foreign_intact(step: str) -> None:
        assert host.foreign_iptables() == ipt_before, f"iptables foreign rules changed after {step}"
        assert host.run(["nft", "list", "table", "inet", "foreign"]).stdout == nft_before, step

    for step, path in (("apply", first), ("re-apply", first), ("changed apply", changed), ("apply", first)):
        proc = host.cli("apply", "-f", str(path), backend=backend)
        assert proc.returncode == 0, proc.stderr
        foreign_intact(step)
        if backend == "iptables":
            # Exactly one jump per (built-in chain, our chain), however often apply ran.
            jumps = [
                ln
                for ln in host.ours_iptables().splitlines()
                if ln.split()[1:3][-1] in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")
            ]
            assert len(jumps) == len(set(jumps)) == 14, jumps
        else:
            assert "table ip svc2rules" in host.ruleset()
    proc = host.cli("cleanup", backend=backend)
    assert proc.returncode == 0, proc.stderr
    foreign_intact("cleanup")
    if backend == "iptables":
        assert _strip_dates(host.run(["iptables-save"]).stdout) == _strip_dates(whole_before)
    assert "svc2rules" not in host.ruleset()
    assert "SVC2R" not in host.ruleset()


def _strip_dates(save: str) -> str:
    return "\n".join(line for line in save.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_apply_writes_nothing_and_a_change_writes_only_it(
    host: Host, manifests: Path, backend: str
) -> None:
    first = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(first), backend=backend).returncode == 0
    before = host.ours(backend)

    with nft_monitor(host) as monitor:
        proc = host.cli("apply", "-f", str(first), backend=backend)
        events = monitor.events()
    assert proc.returncode == 0, proc.stderr
    assert "no changes" in proc.stderr and "nothing written" in proc.stderr
    assert events.strip() == "", f"the second apply wrote to the kernel:\n{events}"
    assert host.ours(backend) == before

    # One Service's endpoint changes: only its objects are written.
    changed = write(manifests, small_cluster(endpoints=("10.180.0.1", "10.180.0.3")), "changed.yaml")
    with nft_monitor(host) as monitor:
        proc = host.cli("apply", "-f", str(changed), backend=backend)
        events = monitor.events()
    assert proc.returncode == 0, proc.stderr
    assert "incremental" in proc.stderr
    touched = [ln for ln in events.splitlines() if ln.startswith(("add", "delete"))]
    assert touched, events
    # Nothing of the other Services (dns, empty) or of the global dispatch is rewritten.
    for line in touched:
        assert "172.30.0.10" not in line and "172.30.0.42" not in line, line
        assert "SVC2R-SERVICES " not in line and "service-ips" not in line, line
    if backend == "nftables":
        assert all(" element " in ln or "applied-generation" in ln for ln in touched), touched


@pytest.mark.parametrize("backend", BACKENDS)
def test_dry_run_diff_and_cleanup(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    empty = host.ruleset()
    proc = host.cli("apply", "-f", str(path), "--dry-run", backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert (
        ("SVC2R-SERVICES" in proc.stdout) if backend == "iptables" else ("table ip svc2rules" in proc.stdout)
    )
    assert host.ruleset() == empty, "--dry-run changed the kernel"
    assert not (host.state_dir / f"{backend}.json").exists()

    diff = host.cli("diff", "-f", str(path), backend=backend)
    assert diff.returncode == 1, diff.stderr
    assert "172.30.0.41" in diff.stdout
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    diff = host.cli("diff", "-f", str(path), backend=backend)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stderr
    changed = write(manifests, small_cluster(endpoints=("10.180.0.1", "10.180.0.9")), "changed.yaml")
    diff = host.cli("diff", "-f", str(changed), backend=backend)
    assert diff.returncode == 1
    assert "10.180.0.9" in diff.stdout and "10.180.0.2" in diff.stdout
    bad = host.cli("diff", "-f", str(manifests / "missing.yaml"), backend=backend)
    assert bad.returncode == 2, bad.stderr

    assert host.cli("cleanup", backend=backend).returncode == 0
    assert "SVC2R" not in host.ruleset() and "svc2rules" not in host.ruleset()
    again = host.cli("cleanup", backend=backend)
    assert again.returncode == 0 and "nothing of ours" in again.stderr
    assert not (host.state_dir / f"{backend}.json").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_is_repaired(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    wanted = host.ours(backend)
    if backend == "iptables":
        # Someone deletes one of our jumps and one of our chains' rules.
        host.run(
            [
                "iptables",
                "-t",
                "nat",
                "-D",
                "PREROUTING",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "SVC2R-SERVICES",
            ]
        )
        host.run(["iptables", "-t", "nat", "-F", "SVC2R-APPLIED"])
    else:
        host.run(["nft", "flush", "map", "ip", "svc2rules", "service-ips"])
        host.run(["nft", "delete", "set", "ip", "svc2rules", "applied-generation"])
    assert host.ours(backend) != wanted
    proc = host.cli("apply", "-f", str(path), backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert host.ours(backend) == wanted


def test_jump_missing_is_restored_without_full_reload(host: Host, manifests: Path) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path)).returncode == 0
    wanted = host.ours_iptables()
    host.run(
        [
            "iptables",
            "-t",
            "nat",
            "-D",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "SVC2R-SERVICES",
        ]
    )
    proc = host.cli("apply", "-f", str(path))
    assert proc.returncode == 0 and "1 jump(s) fixed" in proc.stderr, proc.stderr
    assert host.ours_iptables() == wanted


@pytest.mark.parametrize("backend", BACKENDS)
def test_sysctls_set_and_reported_or_refused(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    host.run(["sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv4.conf.all.route_localnet=0"])
    proc = host.cli("apply", "-f", str(path), "--no-sysctl", backend=backend)
    assert proc.returncode == 1
    assert "net.ipv4.ip_forward=1" in proc.stderr and "--no-sysctl" in proc.stderr
    assert "SVC2R" not in host.ruleset() and "svc2rules" not in host.ruleset()
    proc = host.cli("apply", "-f", str(path), backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert "set sysctl net.ipv4.ip_forward=1 (was 0)" in proc.stderr
    assert host.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    if backend == "iptables":  # localhost NodePorts need route_localnet
        assert "net.ipv4.conf.all.route_localnet=1" in proc.stderr
        assert host.run(["sysctl", "-n", "net.ipv4.conf.all.route_localnet"]).stdout.strip() == "1"
    proc = host.cli("apply", "-f", str(path), "--no-sysctl", backend=backend)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_busy_lock_is_a_retryable_exit_3(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    host.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.state_dir / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = host.cli("apply", "-f", str(path), "--lock-timeout", "0.5", backend=backend)
    finally:
        os.close(fd)
    assert proc.returncode == 3
    assert "retry" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "SVC2R" not in host.ruleset() and "svc2rules" not in host.ruleset()


def test_switching_backend_warns_about_the_other_backends_rules(host: Host, manifests: Path) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend="iptables").returncode == 0
    proc = host.cli("apply", "-f", str(path), backend="nftables")
    assert proc.returncode == 0, proc.stderr
    assert "rules of backend iptables are still loaded" in proc.stderr
    assert host.cli("cleanup", backend="iptables").returncode == 0
    proc = host.cli("apply", "-f", str(path), backend="nftables")
    assert "still loaded" not in proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_resync_repairs_what_the_cheap_check_cannot_see(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    wanted = host.ours(backend)
    # A rule changed inside our own objects: the generation marker still matches.
    if backend == "iptables":
        host.run(["iptables", "-t", "nat", "-A", "SVC2R-SERVICES", "-d", "192.0.2.7", "-j", "RETURN"])
    else:
        host.run(["nft", "add", "element", "ip", "svc2rules", "hairpin", "{ 192.0.2.7 . 192.0.2.7 }"])
    assert host.ours(backend) != wanted
    proc = host.cli("apply", "-f", str(path), backend=backend)
    assert "no changes" in proc.stderr  # the cheap check trusts the marker
    proc = host.cli("apply", "-f", str(path), "--resync", backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert host.ours(backend) == wanted
