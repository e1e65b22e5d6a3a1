"""apply / diff / cleanup: the engine that puts a backend's rules on the host.

It orchestrates (lock, state, compile, plan, validate, load, commit); the host itself is
reached through `svc2rules.host`, and each backend plugs in its applier
(`svc2rules.backends.applier`).
"""

from svc2rules.apply.engine import ApplyOptions, ApplyReport, apply_plan, cleanup_host, diff_plan

__all__ = ["ApplyOptions", "ApplyReport", "apply_plan", "cleanup_host", "diff_plan"]
