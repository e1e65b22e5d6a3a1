"""What a backend's applier provides to the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from svc2rules.apply.runner import Runner
from svc2rules.backends import RenderOptions
from svc2rules.ir import Plan
from svc2rules.resolve.incremental import IncrementalCompile


@dataclass
class Change:
    """One kernel write, ready to validate and load."""

    kind: str  # "none" | "incremental" | "full" | "cleanup"
    payload: str  # exactly what is loaded (printed by --dry-run)
    summary: str
    new_state: dict[str, Any] | None
    details: dict[str, Any] = field(default_factory=dict)
    # Set by appliers that plan from an incremental compile (no whole Plan to ask sysctls() of).
    sysctls: dict[str, str] | None = None
    # For a "none" change: state entries to record anyway (e.g. the fingerprints of Services
    # whose objects changed without changing their rules), so the next run starts from them.
    state_update: dict[str, Any] | None = None
    # The only keys of the new state's large tables that may differ from the old state's
    # (StateStore.write_pending): bulk entry -> inner table -> keys.
    touched: dict[str, dict[Any, Any]] | None = None


class Applier(Protocol):
    name: str

    def desired(self, plan: Plan, options: RenderOptions) -> Any: ...

    def sysctls(self, plan: Plan) -> dict[str, str]: ...

    def marker(self, runner: Runner, state: dict[str, Any] | None) -> str | None:
        """The generation the kernel carries (cheap), or None when it carries none."""
        ...

    def quick_check(self, runner: Runner, state: dict[str, Any]) -> bool:
        """Beyond the marker: does the kernel still have what the state says (cheaply)?"""
        ...

    def read_live(self, runner: Runner, options: RenderOptions) -> dict[str, Any] | None:
        """Slow path: what we own in the kernel, as a state, when the state file is not trusted."""
        ...

    def plan_change(
        self, runner: Runner, old: dict[str, Any] | None, trusted: bool, desired: Any, generation: str
    ) -> Change: ...

    def plan_cleanup(self, runner: Runner, old: dict[str, Any] | None, options: RenderOptions) -> Change: ...

    def validate(self, runner: Runner, change: Change) -> None: ...

    def load(self, runner: Runner, change: Change) -> None: ...

    def dump_live(self, runner: Runner, options: RenderOptions) -> str: ...

    def dump_desired(self, runner: Runner, desired: Any) -> str: ...

    def udp_facts(self, desired: Any) -> dict[str, dict[str, Any]]: ...


class CompiledApplier(Applier, Protocol):
    """An applier that can plan from an incremental compile, rendering only the Services whose
    objects changed when its state allows (and the whole plan otherwise)."""

    # State entries kept in the state's bulk file (see apply/state.py).
    bulk_state_keys: tuple[str, ...]

    def desired(self, plan: Plan, options: RenderOptions, services: dict[str, str] | None = None) -> Any: ...

    def plan_services(
        self,
        runner: Runner,
        old: dict[str, Any],
        compiled: IncrementalCompile,
        options: RenderOptions,
        generation: str,
    ) -> Change | None:
        """The change from the changed Services alone, or None when it needs the whole plan."""

    def plan_compiled(
        self,
        runner: Runner,
        old: dict[str, Any] | None,
        trusted: bool,
        compiled: IncrementalCompile,
        options: RenderOptions,
        generation: str,
    ) -> Change: ...


def few_services_changed(old: dict[str, Any], compiled: IncrementalCompile) -> bool:
    """Whether planning Service by Service pays: rendering a quarter of the Services twice (old
    and new) costs about what rendering the whole plan once does. `old["groups"]` is the
    state's fingerprint per Service."""
    old_groups = old.get("groups")
    if not isinstance(old_groups, dict):
        return False
    groups = {entry.name: entry.fingerprint.hex() for entry in compiled.services}
    changed = sum(1 for name, fp in groups.items() if old_groups.get(name) != fp)
    changed += sum(1 for name in old_groups if name not in groups)
    return changed <= max(len(groups), len(old_groups)) // 4 or changed <= 8


def plan_by_service_or_whole(
    applier: CompiledApplier,
    runner: Runner,
    old: dict[str, Any] | None,
    trusted: bool,
    compiled: IncrementalCompile,
    options: RenderOptions,
    generation: str,
) -> Change:
    """Plan from the changed Services alone when the state is trusted and few changed; else
    the change from the whole plan (diffed against the state or the kernel), recording each
    Service's fingerprint so that the next run can plan Service by Service."""
    if trusted and old is not None and few_services_changed(old, compiled):
        change = applier.plan_services(runner, old, compiled, options, generation)
        if change is not None:
            return change
    plan = compiled.plan()
    services = {entry.name: entry.fingerprint.hex() for entry in compiled.services}
    change = applier.plan_change(runner, old, trusted, applier.desired(plan, options, services), generation)
    change.sysctls = applier.sysctls(plan)
    return change
