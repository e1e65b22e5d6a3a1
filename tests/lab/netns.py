"""Network-namespace plumbing: naming, creation, per-namespace worker threads and leak-proof cleanup.

Every namespace this module creates is recorded in a process-wide registry *before* it exists, so
that whatever happens next (a failing build, a test error, SIGTERM, interpreter exit) it is
deleted. Names carry the creating pid, so namespaces leaked by a process that died hard
(SIGKILL, ``os._exit``) are reaped by the next lab run without touching anyone else's.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import FrameType
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
PREFIX = "s2r-"
# s2r-<pid>-<6 hex>-<role>: the pid lets a later run tell leaked namespaces from live ones.
_NAME_RE = re.compile(r"^s2r-(\d+)-[0-9a-f]{6}-[a-z0-9]+$")

_libc = ctypes.CDLL(None, use_errno=True)

_registry_lock = threading.Lock()
_live: set[str] = set()
_hooks_installed = False
_reaped = False


class CommandError(RuntimeError):
    """A host tool (ip, iptables-restore, nft, ...) failed; the message carries its stderr."""


def new_test_id() -> str:
    """A short random id, unique enough per test, that also fits in 15-character interface names."""
    return secrets.token_hex(3)


def netns_name(test_id: str, role: str) -> str:
    return f"{PREFIX}{os.getpid()}-{test_id}-{role}"


def run(argv: Sequence[str], *, input_text: str | None = None, timeout: float = 300.0) -> str:
    """Run a command, return stdout, raise CommandError with stderr on a non-zero exit.

    ``timeout`` bounds a hang, not a speed: on a busy host even ``ip`` may take a while.
    """
    proc = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise CommandError(f"{' '.join(argv)} exited {proc.returncode}: {detail}")
    return proc.stdout


def ip_batch(commands: Iterable[str], netns: str | None = None) -> None:
    """Run many ``ip`` commands in one process (one fork instead of dozens per test)."""
    lines = [c for c in commands if c]
    if not lines:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, input_text="\n".join(lines) + "\n")


def exec_in(netns: str, argv: Sequence[str], *, input_text: str | None = None) -> str:
    return run(["ip", "netns", "exec", netns, *argv], input_text=input_text)


def setns_current_thread(name: str) -> None:
    """Move the *calling thread* (only) into the named network namespace."""
    fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsWorker:
    """A single thread living inside one namespace.

    Sockets belong to the namespace of the thread that created them and keep it for life, so
    creating them here and using them from any other thread (e.g. an asyncio loop) is enough to
    talk from inside the namespace without spawning a process per probe.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"netns-{name}",
            initializer=setns_current_thread,
            initargs=(name,),
        )

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def write_sysctls(self, values: dict[str, str], optional: Iterable[str] = ()) -> None:
        """Write ``net.*`` sysctls as seen from inside the namespace (/proc/sys/net is per-netns)."""
        self.call(_write_sysctls, dict(values), frozenset(optional))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _write_sysctls(values: dict[str, str], optional: frozenset[str]) -> None:
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as fh:
                fh.write(value)
        except FileNotFoundError:
            if key not in optional:
                raise


def register(names: Iterable[str]) -> None:
    install_cleanup_hooks()
    with _registry_lock:
        _live.update(names)


def delete_netns(names: Iterable[str]) -> None:
    """Delete namespaces (missing ones are fine: a build may have failed half-way)."""
    names = list(names)
    if not names:
        return
    existing = [n for n in names if os.path.exists(f"{NETNS_DIR}/{n}")]
    try:
        if existing:
            # -force: keep going past one failure so a single stuck namespace cannot leak the rest.
            run(["ip", "-force", "-batch", "-"], input_text="".join(f"netns del {n}\n" for n in existing))
    finally:
        with _registry_lock:
            _live.difference_update(names)


def list_netns(prefix: str = PREFIX) -> set[str]:
    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)}
    except FileNotFoundError:
        return set()


def cleanup_all() -> None:
    with _registry_lock:
        names = sorted(_live)
    with contextlib.suppress(Exception):
        delete_netns(names)


def reap_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (leaked by SIGKILL / os._exit)."""
    stale = []
    for name in list_netns():
        m = _NAME_RE.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.append(name)
        except PermissionError:
            pass  # alive, owned by someone else
    delete_netns(stale)
    return stale


def reap_stale_once() -> None:
    global _reaped
    if not _reaped:
        _reaped = True
        reap_stale()


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    cleanup_all()
    previous = _previous_handlers.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    # Re-deliver with the default action so the exit status still says "killed by SIGTERM".
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_previous_handlers: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}


def install_cleanup_hooks() -> None:
    """atexit + SIGTERM/SIGHUP handlers; SIGINT is left to pytest (KeyboardInterrupt -> finalizers)."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(cleanup_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers us
    for sig in (signal.SIGTERM, signal.SIGHUP):
        _previous_handlers[sig] = signal.getsignal(sig)
        signal.signal(sig, _on_fatal_signal)
