"""A private network namespace for in-process tests: one thread unshares it and runs an
asyncio loop there, so every socket the loop creates (listeners, clients, the proxy's own)
and every command it starts lives in that namespace, which vanishes with the thread."""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

root_only = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a private network namespace"),
]


class Peer:
    """A named namespace; sockets for it are made by a short-lived thread that enters it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def listen(self, address: tuple[str, int]) -> socket.socket:
        """A TCP listener there: the kernel completes handshakes even if nobody accepts."""
        made: list[socket.socket] = []
        errors: list[BaseException] = []

        def make() -> None:
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                sock = socket.socket()
                sock.bind(address)
                sock.listen(128)
                made.append(sock)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return made[0]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


class NetnsLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._peers: list[Peer] = []
        self._thread = threading.Thread(target=self._main, name="s2r-userspace-netns", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 60) -> T:
        """Run a plain function in the namespace (e.g. a command: children inherit it)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def sh(self, *argv: str, input_text: str | None = None) -> str:
        def go() -> str:
            proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
            return proc.stdout

        return self.call(go)

    def peer(self) -> Peer:
        """A second namespace behind a veth (10.99.0.1 here, 10.99.0.2 there): connects to it
        complete asynchronously, unlike connects over `lo`."""
        peer = Peer(f"s2rus-{os.getpid()}-{secrets.token_hex(3)}")
        self.sh("ip", "netns", "add", peer.name)
        try:
            self.sh(
                "ip", "link", "add", "s2rus0", "type", "veth", "peer", "name", "s2rus1", "netns", peer.name
            )
            self.sh("ip", "addr", "add", "10.99.0.1/30", "dev", "s2rus0")
            self.sh("ip", "link", "set", "s2rus0", "up")
            for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.99.0.2/30", "dev", "s2rus1"]):
                self.sh("ip", "-n", peer.name, *cmd)
            self.sh("ip", "-n", peer.name, "link", "set", "s2rus1", "up")
        except BaseException:
            peer.close()
            raise
        self._peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self._peers:
            peer.close()

        async def cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
