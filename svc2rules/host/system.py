"""Host facts an apply depends on: privileges and the sysctls the rules rely on."""

from __future__ import annotations

from pathlib import Path

from svc2rules.errors import ApplyError

CAP_NET_ADMIN = 12
PROC_SYS = Path("/proc/sys")


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


def ensure_sysctls(wanted: dict[str, str], *, allowed: bool) -> list[str]:
    """Set each sysctl that differs (returning what changed), or refuse when not allowed."""
    missing = {k: v for k, v in wanted.items() if read_sysctl(k) != v}
    if not missing:
        return []
    if not allowed:
        needed = ", ".join(f"{k}={v} (is {read_sysctl(k) or 'unset'})" for k, v in sorted(missing.items()))
        raise ApplyError(f"the rules need {needed}; set them or run without --no-sysctl")
    changed = []
    for name, value in sorted(missing.items()):
        before = read_sysctl(name)
        try:
            _path(name).write_text(value + "\n", encoding="ascii")
        except OSError as exc:
            raise ApplyError(f"cannot set {name}={value}: {exc.strerror or exc}") from exc
        changed.append(f"{name}={value} (was {before})")
    return changed
