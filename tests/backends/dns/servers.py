"""Real DNS servers from Debian's packages, serving our output on a loopback port the test picks.

`named` (package bind9) loads the zone file, `dnsmasq` (package dnsmasq) the hosts file; `dig`
(bind9-dnsutils) asks them. Servers run in the foreground as children of the test and are
always stopped, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
# Readiness and answers are awaited, not timed: these only bound how long a broken server is
# waited for (a busy host may take many seconds to start named, or to answer one query).
START_TIMEOUT = 120.0
START_ATTEMPTS = 3
QUERY_DEADLINE = 60.0
# Authoritative answers only, quick retries, and just the header (for the status) and answers.
DIG_FLAGS = ("+norecurse", "+time=2", "+tries=2", "+noall", "+comments", "+answer")
# Debian puts the daemons in /usr/sbin, which is not on every user's PATH.
_SBIN = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/sbin", "/sbin"]))
PACKAGES = {"named": "bind9", "named-checkzone": "bind9-utils", "dig": "bind9-dnsutils", "dnsmasq": "dnsmasq"}


def tool(name: str) -> str:
    """Path of a DNS tool, or skip the test saying which Debian package provides it."""
    found = shutil.which(name, path=_SBIN)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package {PACKAGES[name]})")
    return found


@dataclass(frozen=True)
class Answer:
    status: str  # NOERROR, NXDOMAIN, ...
    records: tuple[tuple[str, str, str], ...]  # (owner, type, data), as dig prints them

    def data(self, rtype: str) -> set[str]:
        return {data for _, t, data in self.records if t == rtype}


@dataclass(frozen=True)
class Server:
    port: int
    log: Path

    def query(self, name: str, rtype: str) -> Answer:
        """The server's answer; asked again while dig gets none (a lost datagram or a server slow
        to reply is not what a test asks about), until QUERY_DEADLINE."""
        deadline = time.monotonic() + QUERY_DEADLINE
        while True:
            answer = self.ask_once(name, rtype)
            if answer.status or time.monotonic() >= deadline:
                return answer
            time.sleep(0.1)

    def ask_once(self, name: str, rtype: str) -> Answer:
        """One dig run: status "" if it got no answer (nothing listening, or no reply in time)."""
        out = subprocess.run(
            [tool("dig"), f"@{LOOPBACK}", "-p", str(self.port), *DIG_FLAGS, name, rtype],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        status = next(
            (line.split("status: ")[1].split(",")[0] for line in out.splitlines() if "status: " in line), ""
        )
        records = []
        for line in out.splitlines():
            if line and not line.startswith(";"):
                owner, _ttl, _class, rtype_, data = line.split(None, 4)
                records.append((owner, rtype_, data))
        return Answer(status, tuple(records))


def free_port() -> int:
    """A port free for both UDP and TCP on the loopback address (the server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on the loopback address")


@contextlib.contextmanager
def _running(command: Callable[[int], list[str]], log: Path, probe: str, probe_type: str) -> Iterator[Server]:
    """Start `command(port)` until one answers `probe` (another process may take a free port
    between our check and the server's bind), then always stop it."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        argv = command(port)
        with log.open("w") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            server = Server(port, log)
            if _answers(proc, server, probe, probe_type):
                yield server
                return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise RuntimeError(f"{Path(argv[0]).name} never answered on {LOOPBACK}:\n{log.read_text()}")


def _answers(proc: subprocess.Popen[bytes], server: Server, probe: str, probe_type: str) -> bool:
    """True once the probe gets NOERROR; False if nothing answers; an error for any other status
    (e.g. SERVFAIL: named runs but refused to load the zone)."""
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        status = server.ask_once(probe, probe_type).status
        if status == "NOERROR":
            return True
        if status:
            raise RuntimeError(f"{probe} {probe_type} answered {status}:\n{server.log.read_text()}")
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def named(zone_text: str, domain: str = "cluster.local") -> Iterator[Server]:
    """BIND serving `zone_text` as the primary zone `domain`, authoritative only."""
    binary = tool("named")
    with tempfile.TemporaryDirectory(prefix="s2r-named-") as tmp:
        root = Path(tmp)
        (root / "zone").write_text(zone_text)

        def command(port: int) -> list[str]:
            (root / "named.conf").write_text(
                f"""options {{
  directory "{root}";
  listen-on port {port} {{ {LOOPBACK}; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  pid-file none;
  session-keyfile none;
}};
controls {{ }};
zone "{domain}" {{ type primary; file "{root}/zone"; }};
"""
            )
            return [binary, "-g", "-n", "1", "-c", str(root / "named.conf")]

        with _running(command, root / "named.log", domain, "SOA") as server:
            yield server


@contextlib.contextmanager
def dnsmasq(hosts_text: str, probe_name: str) -> Iterator[Server]:
    """dnsmasq answering from `hosts_text` (--addn-hosts) and from nothing else."""
    binary = tool("dnsmasq")
    with tempfile.TemporaryDirectory(prefix="s2r-dnsmasq-") as tmp:
        root = Path(tmp)
        hosts = root / "hosts"
        hosts.write_text(hosts_text)

        def command(port: int) -> list[str]:
            return [
                binary,
                "--keep-in-foreground",
                "--log-facility=-",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                f"--addn-hosts={hosts}",
                f"--listen-address={LOOPBACK}",
                "--bind-interfaces",
                f"--port={port}",
                "--pid-file=",
                # Stay the user we are: dnsmasq started as root would otherwise switch to `nobody`.
                f"--user={pwd.getpwuid(os.getuid()).pw_name}",
            ]

        with _running(command, root / "dnsmasq.log", probe_name, "A") as server:
            yield server
