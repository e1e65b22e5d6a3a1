"""`svc2rules proxy` as a real child process: start it, follow its log, signal it."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.lab.loaders import svc2rules_command

# Bounds waiting for the proxy (its log, its exit): a hang fails, but starting a Python process
# on a busy host may take many seconds, and the line or exit ends each wait at once.
PROCESS_DEADLINE = 120.0


def proxy_argv(*args: str) -> list[str]:
    return [*svc2rules_command(), "proxy", *args]


class ProxyProcess:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        # A session of its own: close() can then end the proxy and anything a wrapper started.
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = PROCESS_DEADLINE) -> str:
        """The next log line containing `text`; fails with the whole log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no {text!r} from the proxy within {timeout}s; log: {self.log}"
                ) from None
            if line is None:
                raise AssertionError(f"proxy exited ({self.proc.wait()}) before {text!r}; log: {self.log}")
            if text in line:
                return line

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = PROCESS_DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(PROCESS_DEADLINE)
        self._reader.join(5)


def write(path: Path, text: str) -> None:
    """Replace atomically: a SIGHUP may arrive while a test rewrites the manifest."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
