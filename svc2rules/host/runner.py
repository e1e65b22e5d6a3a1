"""The one place that starts processes (iptables-restore, nft, conntrack, unshare).

Everything else builds argv lists and payloads; tests and `--dry-run` can see exactly
what would run. Kernel loaders run in their own session so a Ctrl-C aimed at `apply`
cannot stop them between two table commits, and they inherit the lock's descriptor:
if `apply` itself is killed, the lock stays held until the loader has finished, so
whoever takes the lock next sees the old or the new ruleset, never a load in flight.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from svc2rules.errors import ApplyError

# Tools live in /usr/sbin on Debian; a non-login root shell may not have it on PATH.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclass(frozen=True, slots=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for folder in _EXTRA_PATH:
        candidate = os.path.join(folder, tool)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Runner:
    """Runs host tools. `keep_fds` are inherited by kernel loaders (the lock)."""

    keep_fds: tuple[int, ...] = ()
    timeout: float = 600.0
    log: list[tuple[str, ...]] = field(default_factory=list)

    def _resolve(self, argv: Sequence[str]) -> list[str]:
        path = which(argv[0])
        if path is None:
            raise ApplyError(f"{argv[0]} not found: install it (iptables, nftables, conntrack packages)")
        return [path, *argv[1:]]

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, loader: bool = False, holds_lock: bool = False
    ) -> Result:
        """Run argv; never raises on a non-zero exit (callers map errors themselves).

        `holds_lock`: the process inherits the lock without being a loader. `nft -c` is one:
        the kernel runs its batch and then aborts it, and a listing taken meanwhile can show
        a mix of the batch's elements and the live ones; if `apply` is killed during the
        check, whoever takes the lock next must not read while it is still running."""
        full = self._resolve(argv)
        self.log.append(tuple(argv))
        if loader or holds_lock:
            return self._run_detached(argv, full, stdin, loader=loader)
        try:
            proc = subprocess.run(
                full, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ApplyError(f"{argv[0]} did not finish within {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise ApplyError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def _run_detached(
        self, argv: Sequence[str], full: list[str], stdin: str | None, *, loader: bool
    ) -> Result:
        """A process that must outlive `apply`: it reads its whole input from a file and writes
        to files, never to a pipe whose reader can die (a killed `apply` would otherwise kill
        iptables-restore with SIGPIPE between two table commits)."""
        with (
            tempfile.TemporaryFile(prefix="svc2rules-in-") as infile,
            tempfile.TemporaryFile(prefix="svc2rules-out-") as outfile,
            tempfile.TemporaryFile(prefix="svc2rules-err-") as errfile,
        ):
            if stdin is not None:
                infile.write(stdin.encode())
                infile.flush()
                infile.seek(0)
            try:
                proc = subprocess.run(
                    full,
                    stdin=infile if stdin is not None else subprocess.DEVNULL,
                    stdout=outfile,
                    stderr=errfile,
                    # A kernel write is never cut short: killing a loader between two table
                    # commits is the one way to leave a half-written host.
                    timeout=None if loader else self.timeout,
                    check=False,
                    pass_fds=self.keep_fds,
                    start_new_session=loader,
                )
            except subprocess.TimeoutExpired as exc:
                raise ApplyError(f"{argv[0]} did not finish within {self.timeout:.0f} s") from exc
            except OSError as exc:
                raise ApplyError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
            outfile.seek(0)
            errfile.seek(0)
            stdout = outfile.read().decode(errors="replace")
            stderr = errfile.read().decode(errors="replace")
        return Result(tuple(argv), proc.returncode, stdout, stderr)

    def run_many(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        """Run read-only commands (listings) side by side; like run() for each, in order."""
        started: list[tuple[Sequence[str], subprocess.Popen[str]]] = []
        for argv in argvs:
            full = self._resolve(argv)
            self.log.append(tuple(argv))
            try:
                proc = subprocess.Popen(
                    full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
                )
            except OSError as exc:
                for _, other in started:
                    other.kill()
                    other.wait()
                raise ApplyError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
            started.append((argv, proc))
        out = []
        for argv, proc in started:
            try:
                stdout, stderr = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired as exc:
                for _, other in started:
                    other.kill()
                    other.wait()
                raise ApplyError(f"{argv[0]} did not finish within {self.timeout:.0f} s") from exc
            out.append(Result(tuple(argv), proc.returncode, stdout, stderr))
        return out

    def check(self, argv: Sequence[str], *, stdin: str | None = None, loader: bool = False) -> Result:
        result = self.run(argv, stdin=stdin, loader=loader)
        if not result.ok:
            raise ApplyError(f"{' '.join(argv)} failed: {first_line(result.stderr or result.stdout)}")
        return result


def first_line(text: str) -> str:
    lines = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith("Try `")  # iptables' usage hint, not the error
    ]
    return " / ".join(lines[:3]) if lines else "(no message)"
