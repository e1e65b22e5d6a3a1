"""Host facts an apply depends on: privileges and the sysctls the rules rely on."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from svc2rules.errors import ApplyError

CAP_NET_ADMIN = 12
PROC_SYS = Path("/proc/sys")
# conntrack.tcpBeLiberal (kube-proxy: SetTCPBeLiberal in cmd/kube-proxy/app/conntrack.go): track
# out-of-window TCP packets instead of marking them INVALID. Not per family.
TCP_BE_LIBERAL_SYSCTL = "net.netfilter.nf_conntrack_tcp_be_liberal"
CONNTRACK_SYSCTLS = "net.netfilter.nf_conntrack_"


def require_net_admin() -> None:
    """One clear line instead of a tool's cryptic 'Permission denied' halfway through."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return  # not Linux /proc: let the tools speak for themselves
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            if not int(line.split()[1], 16) & (1 << CAP_NET_ADMIN):
                raise ApplyError("needs root or CAP_NET_ADMIN to read and change the host's rules")
            return


def _path(name: str) -> Path:
    return PROC_SYS / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _path(name).read_text(encoding="ascii").strip()
    except OSError:
        return None


def check_sysctls(wanted: dict[str, str], *, allowed: bool) -> None:
    """Refuse, before anything is touched, when the rules need sysctls we may not set."""
    missing = {k: v for k, v in wanted.items() if read_sysctl(k) != v}
    if missing and not allowed:
        needed = ", ".join(f"{k}={v} (is {read_sysctl(k) or 'unset'})" for k, v in sorted(missing.items()))
        raise ApplyError(f"the rules need {needed}; set them or run without --no-sysctl")


def ensure_sysctls(wanted: dict[str, str], *, allowed: bool) -> dict[str, str | None]:
    """Set each sysctl that differs, or refuse when not allowed; return the previous value of
    each one set (restore_sysctls puts them back)."""
    check_sysctls(wanted, allowed=allowed)
    previous: dict[str, str | None] = {}
    for name, value in sorted(wanted.items()):
        if name.startswith(CONNTRACK_SYSCTLS) and not _path(name).exists():
            _load_conntrack()
        before = read_sysctl(name)
        if before == value:
            continue
        try:
            _path(name).write_text(value + "\n", encoding="ascii")
        except OSError as exc:
            restore_sysctls(previous)
            raise ApplyError(f"cannot set {name}={value}: {exc.strerror or exc}") from exc
        previous[name] = before
    return previous


def _load_conntrack() -> None:
    """conntrack's sysctls exist once nf_conntrack is loaded, which the rules' `ct` matches do
    only when they are loaded; kube-proxy sets them before its first sync (best effort: if
    the module cannot be loaded, the write below says why it failed)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["modprobe", "nf_conntrack"], capture_output=True, timeout=10, check=False)


def restore_sysctls(previous: dict[str, str | None]) -> None:
    """Put back what ensure_sysctls changed (best effort: a value that cannot be written back is
    left as it is; the apply that changed it is failing anyway)."""
    for name, value in previous.items():
        if value is None:
            continue
        with contextlib.suppress(OSError):
            _path(name).write_text(value + "\n", encoding="ascii")
