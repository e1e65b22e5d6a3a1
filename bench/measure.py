"""Run a command and measure it: wall time, CPU time and peak RSS (from wait4)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    wall: float
    user: float
    system: float
    max_rss_mib: float
    returncode: int | None  # None: killed at the timeout
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    argv: list[str], *, stdin: Path | None = None, stdout: Path | None = None, timeout: float = 600
) -> Measured:
    with (
        open(stdin or os.devnull, "rb") as fin,
        open(stdout or os.devnull, "wb") as fout,
        open(os.devnull, "wb") if False else _Capture() as ferr,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr.fileno())
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                return Measured(
                    time.perf_counter() - start,
                    usage.ru_utime,
                    usage.ru_stime,
                    usage.ru_maxrss / 1024,
                    None,
                    ferr.text(),
                )
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Measured(
            wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, ferr.text()
        )


class _Capture:
    """A temporary file for a child's stderr, read back as text."""

    def __enter__(self) -> _Capture:
        import tempfile

        self._file = tempfile.TemporaryFile()
        return self

    def fileno(self) -> int:
        return self._file.fileno()

    def text(self) -> str:
        self._file.seek(0)
        return self._file.read().decode(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        self._file.close()
