"""Our own lock: one `apply`/`cleanup`/`diff` at a time per state directory.

An exclusive `flock` on `<state-dir>/lock`. The kernel drops it when the last holder of
the descriptor exits, so a killed run never leaves a stale lock; the descriptor is
inherited by the kernel loader (see runner.py) so the lock outlives a killed `apply`
exactly as long as its load is still running.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from svc2rules.errors import ApplyError, LockBusyError

LOCK_NAME = "lock"


class StateLock:
    def __init__(self, state_dir: Path, timeout: float) -> None:
        self.path = state_dir / LOCK_NAME
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> StateLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ApplyError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusyError(
                        f"another svc2rules run holds {self.path} (waited {self.timeout:g} s); "
                        "retry later or raise --lock-timeout"
                    ) from None
                time.sleep(0.05)
        self.fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
