"""Run inside a node's namespace by test_refusal.py: apply with one line of the planned write
broken (and, optionally, validation skipped), print the error the user would get."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from svc2rules.apply.engine import ApplyInput, ApplyOptions, apply_plan
from svc2rules.backends import get_backend
from svc2rules.config import build_config
from svc2rules.errors import ApplyError
from svc2rules.load import read_sources


def main() -> int:
    backend, manifest, state_dir, old, new, skip_validation = sys.argv[1:7]
    config = build_config(
        {"node_name": "node1", "node_ips": ("192.168.0.2",), "cluster_cidrs": ("10.0.0.0/8",)}
    )
    sources = read_sources([manifest], recursive=False, stdin=sys.stdin.buffer)
    factory = get_backend(backend).applier
    assert factory is not None
    # The write is planned from the whole plan or, for an incremental compile, from the
    # changed Services alone: both are broken the same way.
    for method in ("plan_change", "plan_services"):
        original = getattr(factory, method, None)
        if original is not None:
            setattr(factory, method, _broken(original, old, new))
    if skip_validation == "yes":
        factory.validate = lambda self, runner, change: None  # type: ignore[attr-defined]
    try:
        apply_plan(ApplyInput(sources, config, backend), ApplyOptions(state_dir=Path(state_dir)))
    except ApplyError as exc:
        print(exc)
        return 1
    print("applied")
    return 0


def _broken(original: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        change = original(self, *args, **kwargs)
        if change is None:  # plan_services: needs the whole plan (plan_change follows)
            return None
        assert old in change.payload, change.payload
        change.payload = change.payload.replace(old, new, 1)
        return change

    return broken


if __name__ == "__main__":
    sys.exit(main())
