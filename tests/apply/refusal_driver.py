"""Run inside a node's namespace by test_refusal.py: apply with one line of the planned write
broken (and, optionally, validation skipped), print the error the user would get."""

from __future__ import annotations

import sys
from pathlib import Path

from svc2rules.api import plan_from_paths
from svc2rules.apply.engine import ApplyOptions, applier_for, apply_plan
from svc2rules.backends import RenderOptions, get_backend
from svc2rules.config import build_config
from svc2rules.errors import ApplyError


def main() -> int:
    backend, manifest, state_dir, old, new, skip_validation = sys.argv[1:7]
    config = build_config(
        {"node_name": "node1", "node_ips": ("192.168.0.2",), "cluster_cidrs": ("10.0.0.0/8",)}
    )
    plan = plan_from_paths([manifest], False, sys.stdin.buffer, config).plan
    factory = get_backend(backend).applier
    assert factory is not None
    original = factory.plan_change  # type: ignore[attr-defined]

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        change = original(self, *args, **kwargs)
        assert old in change.payload, change.payload
        change.payload = change.payload.replace(old, new, 1)
        return change

    factory.plan_change = broken  # type: ignore[attr-defined]
    if skip_validation == "yes":
        factory.validate = lambda self, runner, change: None  # type: ignore[attr-defined]
    applier_for(backend)
    try:
        apply_plan(plan, backend, RenderOptions(), ApplyOptions(state_dir=Path(state_dir)))
    except ApplyError as exc:
        print(exc)
        return 1
    print("applied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
