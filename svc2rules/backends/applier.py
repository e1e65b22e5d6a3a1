"""The applier contract: what a backend provides so the engine can put its rules on a host.

An applier is built for one set of render options and holds nothing else that changes: every
method is a function of its arguments (the runner, the state, the desired rules), so the order
in which the engine calls them does not matter. The engine knows this contract only:

    marker -> (quick_check | read_live) -> desired / plan_change (or plan_compiled)
           -> validate -> load                      plan_cleanup -> validate -> load

A backend that can plan a change from the changed Services alone declares it by being an
`IncrementalApplier`; the engine never probes for methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypedDict, TypeVar

from svc2rules.backends import RenderOptions
from svc2rules.host.conntrack import UdpFacts
from svc2rules.host.runner import Runner
from svc2rules.host.state import Touched
from svc2rules.ir import Plan

if TYPE_CHECKING:
    from svc2rules.compile import Compilation


class BaseState(TypedDict, total=False):
    """What every backend's state holds (a backend's own state extends it)."""

    backend: str
    generation: str | None
    # The digest of the input last applied (the engine skips the compile when it is unchanged).
    input: str | None
    sysctls: dict[str, str]
    # Per UDP service port, what stale-conntrack cleanup needs (host.conntrack).
    udp: UdpFacts
    # When (Unix time) our objects were last read back or reloaded whole: the engine does it
    # again once this is older than its sync period (drift repair, apply/engine.py).
    checked: float


DesiredT = TypeVar("DesiredT")
StateT = TypeVar("StateT", bound=BaseState)


class ChangeKind(StrEnum):
    NONE = "none"
    INCREMENTAL = "incremental"
    FULL = "full"
    CLEANUP = "cleanup"


@dataclass
class Change(Generic[DesiredT, StateT]):
    """One kernel write, ready to validate and load. A backend may extend it with typed fields."""

    kind: ChangeKind
    payload: str  # exactly what is loaded (printed by --dry-run)
    summary: str
    new_state: StateT | None
    # What the change was planned from: error messages name the Service behind a refused line.
    desired: DesiredT | None = None
    # Set when planned from an incremental compile (no whole Plan to ask sysctls() of).
    sysctls: dict[str, str] | None = None
    # For a "none" change: state entries to record anyway (e.g. the fingerprints of Services
    # whose objects changed without changing their rules), so the next run starts from them.
    state_update: Mapping[str, Any] | None = None
    # The only keys of the new state's large tables that may differ from the old state's
    # (StateStore.write_pending).
    touched: Touched | None = None


ChangeT = TypeVar("ChangeT", bound=Change[Any, Any])


class Applier(ABC, Generic[DesiredT, StateT, ChangeT]):
    """Puts one backend's rules on a host for one set of render options."""

    name: ClassVar[str]
    # State entries kept in the state's bulk file (host/state.py).
    bulk_state_keys: ClassVar[tuple[str, ...]] = ()
    # What a state read back from disk must look like (host/schema.py): the backend's TypedDict.
    state_schema: ClassVar[type] = BaseState
    # The loader takes a write whole or refuses it whole (one kernel transaction): a refused
    # load leaves the host as it was, so `validate` first only names the refusal earlier.
    loads_whole: ClassVar[bool] = False

    def __init__(self, options: RenderOptions[Any]) -> None:
        self.options = options

    @abstractmethod
    def desired(self, plan: Plan) -> DesiredT:
        """What the host should carry for a plan."""

    @abstractmethod
    def sysctls(self, plan: Plan) -> dict[str, str]:
        """The sysctls the rules rely on."""

    @abstractmethod
    def udp_facts(self, desired: DesiredT) -> UdpFacts:
        """What stale-conntrack cleanup needs to know about the desired rules."""

    @abstractmethod
    def marker(self, runner: Runner, state: StateT | None) -> str | None:
        """The generation the kernel carries (cheap), or None when it carries none."""

    def quick_check(self, runner: Runner, state: StateT) -> bool:
        """Beyond the marker: does the kernel still have what the state says (cheaply)?"""
        return True

    def foreign(self, runner: Runner, state: StateT | None) -> str | None:
        """Asked when the kernel carries no marker of ours: one line naming what already exists
        under our names (our table, our chain prefix) without our marker, so belongs to someone
        else and must be neither replaced nor removed; None when nothing does, or when `state`
        (a checked state file of ours) names those objects (our marker was deleted: drift)."""
        return None

    def read_live(self, runner: Runner) -> StateT | None:
        """Slow path: what we own in the kernel, as a state, when the state file is not trusted
        (None: the applier replaces what is there without knowing it)."""
        return None

    @abstractmethod
    def plan_change(
        self, runner: Runner, old: StateT | None, trusted: bool, desired: DesiredT, generation: str
    ) -> ChangeT:
        """The smallest write turning the host (as `old` says, trusted or not) into `desired`."""

    @abstractmethod
    def plan_cleanup(self, runner: Runner, old: StateT | None) -> ChangeT:
        """The write that removes everything this backend owns."""

    @abstractmethod
    def validate(self, runner: Runner, change: ChangeT) -> None:
        """Raise ApplyError if the kernel would refuse the change (the host is not touched)."""

    @abstractmethod
    def load(self, runner: Runner, change: ChangeT) -> None:
        """Write the change to the kernel; on failure the host keeps its previous rules."""

    @abstractmethod
    def dump_live(self, runner: Runner) -> str:
        """What we own in the kernel, in the kernel's own spelling (for diff)."""

    @abstractmethod
    def dump_desired(self, runner: Runner, desired: DesiredT) -> str:
        """The desired rules in the kernel's own spelling (for diff)."""


class IncrementalApplier(Applier[DesiredT, StateT, ChangeT]):
    """An applier that can plan from an incremental compile: only the Services whose objects
    changed are rendered when its state allows it (and the whole plan otherwise)."""

    @abstractmethod
    def desired_with_services(self, plan: Plan, services: dict[str, str]) -> DesiredT:
        """`desired`, plus what the state needs to plan the next run Service by Service, given
        each Service's fingerprint (`namespace/name` -> hex)."""

    @abstractmethod
    def plan_services(
        self, runner: Runner, old: StateT, compiled: Compilation, generation: str
    ) -> ChangeT | None:
        """The change from the changed Services alone, or None when it needs the whole plan."""

    def plan_compiled(
        self, runner: Runner, old: StateT | None, trusted: bool, compiled: Compilation, generation: str
    ) -> ChangeT:
        """Plan from the changed Services alone when the state is trusted and few changed; else
        the change from the whole plan (diffed against the state or the kernel), recording each
        Service's fingerprint so that the next run can plan Service by Service."""
        if trusted and old is not None and few_services_changed(old, compiled):
            change = self.plan_services(runner, old, compiled, generation)
            if change is not None:
                return change
        plan = compiled.plan()
        services = compiled.service_groups()
        change = self.plan_change(
            runner, old, trusted, self.desired_with_services(plan, services), generation
        )
        change.sysctls = self.sysctls(plan)
        return change


def few_services_changed(old: Mapping[str, Any], compiled: Compilation) -> bool:
    """Whether planning Service by Service pays: rendering a quarter of the Services twice (old
    and new) costs about what rendering the whole plan once does. `old["groups"]` is the
    state's fingerprint per Service."""
    old_groups = old.get("groups")
    if not isinstance(old_groups, dict):
        return False
    groups = compiled.service_groups()
    changed = sum(1 for name, fp in groups.items() if old_groups.get(name) != fp)
    changed += sum(1 for name in old_groups if name not in groups)
    return changed <= max(len(groups), len(old_groups)) // 4 or changed <= 8
