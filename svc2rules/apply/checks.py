"""What the engine checks before it trusts anything: whether the periodic full check is due
(drift repair) and whether our names already belong to someone else (ownership guard).

Drift repair follows kube-proxy's periodic full sync (pkg/proxy/iptables/proxier.go,
syncProxyRules: `doFullSync := proxier.needFullSync || time.Since(proxier.lastFullSync) >
proxyutil.FullSyncPeriod`, an hour): between two full checks a run trusts the state file and
the kernel's generation marker, so a change made inside our own objects (a deleted element, a
flushed chain) stays until the next full check; a full check reads our objects back with the
target's reader and reloads them, which repairs whatever differs. `svc2rules apply` keeps the
time of the last one in the state (`checked`), so the one-shot timer and `svc2rules run` share
the same clock.
"""

from __future__ import annotations

import time
from typing import Any

from svc2rules.errors import UsageError
from svc2rules.host.runner import Runner

DEFAULT_SYNC_PERIOD = 3600.0  # kube-proxy's FullSyncPeriod (pkg/proxy/util: 1 hour)


def full_check_due(state: dict[str, Any] | Any, sync_period: float | None, now: float) -> float | None:
    """How long ago the last full check was when another is due (None: not due). A state
    without the time of one (older than this version) is due; so is one from the future (the
    clock was set back)."""
    if sync_period is None:
        return None
    checked = state.get("checked") if isinstance(state, dict) else None
    if not isinstance(checked, int | float) or isinstance(checked, bool):
        return float("inf")
    elapsed = now - checked
    return elapsed if not 0 <= elapsed < sync_period else None


def due_note(elapsed: float, sync_period: float) -> str:
    when = "never recorded" if elapsed == float("inf") else f"{duration(elapsed)} ago"
    return (
        f"periodic full check (the last one: {when}; --sync-period {duration(sync_period)}): "
        "reading our objects back from the kernel and reloading them"
    )


def duration(seconds: float) -> str:
    """Seconds as Go spells a duration, to the second (`1h2m3s`, `45s`, `0s`)."""
    if seconds < 0:
        return "-" + duration(-seconds)
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")


def refuse_foreign(applier: Any, runner: Runner, state: Any) -> None:
    """Refuse (exit 2) when our names already belong to someone else on this host."""
    found: str | None = applier.foreign(runner, state)
    if found is not None:
        raise UsageError(found)


def now() -> float:
    return time.time()
