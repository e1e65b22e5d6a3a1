"""The userspace mode in the lab: `svc2rules proxy` running in the node namespace, its REDIRECT
rules loaded there, and long-lived TCP conversations (for reload and drain scenarios)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from tests.userspace.process import ProxyProcess, proxy_argv, write

from .lab import Lab
from .loaders import NODE_NAME, IptablesLoader
from .manifests import manifest
from .netns import NetnsWorker
from .scenario import deploy
from .topology import CLUSTER_CIDR, NODE_IP

# The userspace rules are an iptables-restore payload; the name is what `compile --backend` gets.
USERSPACE = IptablesLoader(name="userspace")
NODE_FLAGS = ("--node-name", NODE_NAME, "--node-ip", NODE_IP, "--cluster-cidr", CLUSTER_CIDR)


class LabProxy:
    """The proxy of one test. `start`/`reload` compile and load the rules with the real CLI
    (unless the proxy applies them itself, `apply_rules=True`) and wait for its log to say so."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.path = workdir / "cluster.yaml"
        self.process: ProxyProcess | None = None
        self.apply_rules = False

    def start(self, *docs: dict[str, Any], apply_rules: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.apply_rules = apply_rules
        self._deploy(docs)
        args = ["-f", str(self.path), *NODE_FLAGS, *extra, *(["--apply-rules"] if apply_rules else [])]
        self.process = ProxyProcess(["ip", "netns", "exec", self.lab.node_netns, *proxy_argv(*args)])
        self.process.wait_for("ready")

    def reload(self, *docs: dict[str, Any]) -> str:
        """New manifests, then SIGHUP; returns the proxy's "reloaded" line."""
        assert self.process is not None
        self._deploy(docs)
        self.process.send(signal.SIGHUP)
        return self.process.wait_for("reloaded")

    def _deploy(self, docs: tuple[dict[str, Any], ...]) -> None:
        write(self.path, manifest(*docs))
        if not self.apply_rules:
            # Listeners for new service ports open only after SIGHUP; a probe in between would be
            # refused. Tests probe after `reload` returns, when both are in place.
            deploy(self.lab, USERSPACE, *docs)

    def close(self) -> None:
        if self.process is not None:
            self.process.close()


class EchoEndpoint:
    """A TCP endpoint in the pods namespace that echoes what it gets, prefixed by `ip:port`
    and the peer it saw; runs in threads so conversations can stay open across probes."""

    def __init__(self, worker: NetnsWorker, ip: str, port: int) -> None:
        self.address = f"{ip}:{port}"
        self.sock = worker.call(_listening, ip, port)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn, peer)

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(f"{self.address} {peer[0]} ".encode() + data)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(2)


def _listening(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(64)
    sock.settimeout(0.2)
    return sock


class Conversation:
    """A TCP connection from a lab namespace that stays open while the test does other things."""

    def __init__(self, worker: NetnsWorker, src: str, dst: str, port: int) -> None:
        self.sock = worker.call(_client, src)
        self.sock.settimeout(60)  # bounds a hang: the proxy on a busy host may answer late
        self.sock.connect((dst, port))

    def say(self, text: str) -> str:
        self.sock.sendall(text.encode())
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _client(src: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((src, 0))
    return sock
