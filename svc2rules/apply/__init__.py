"""Loading compiled rules onto the host: the only package with host side effects.

Shared machinery for every backend's applier: the runner (the only place that starts
processes), the lock, the state file, sysctls, stale UDP conntrack cleanup and the
orchestration in `engine`. Each backend plugs in an `Applier` (`backends/<name>/apply.py`).
"""

from svc2rules.apply.engine import ApplyOptions, ApplyReport, apply_plan, cleanup_host, diff_plan

__all__ = ["ApplyOptions", "ApplyReport", "apply_plan", "cleanup_host", "diff_plan"]
