"""The userspace applier: our `<prefix>-USERSPACE-*` chains and their jumps on a host, for
`svc2rules apply|diff|cleanup --backend userspace` and `svc2rules proxy --apply-rules`.

The chains are few (one rule or two per frontend), so a change rewrites all of them: one
`--noflush` section per table, each atomic; if a later section is refused, the earlier ones are
undone, so the host keeps its previous rules. Before anything is written the desired rules are
trial-loaded in a scratch namespace and listed back (backends/owned_chains.py): that validates
them, and both sides then compare in the kernel's own spelling, so the same input twice writes
nothing. The generation of the last apply is kept in the `<prefix>-USERSPACE-APPLIED` chain.
Cleanup removes every chain of ours and every jump to one, whatever the state file says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import Applier, BaseState, Change, ChangeKind
from svc2rules.backends.owned_chains import OwnedChains, Snapshot
from svc2rules.backends.userspace.addressing import Addressing
from svc2rules.backends.userspace.layout import FAMILIES, build_layout
from svc2rules.backends.userspace.names import UserspaceChains
from svc2rules.backends.userspace.render import build_tables
from svc2rules.errors import ApplyError
from svc2rules.host.conntrack import UdpFacts
from svc2rules.host.runner import Runner
from svc2rules.ir import Plan
from svc2rules.syntax import xtables


@dataclass
class Desired:
    tables: tuple[xtables.Table, ...]


class UserspaceState(BaseState, total=False):
    prefix: str
    # A digest of our chains and jumps as the kernel spells them, for the quick check.
    rules: str


@dataclass(frozen=True, slots=True)
class Step:
    """One restore (one table, or the marker) and the restore that takes it back."""

    what: str
    payload: tuple[xtables.Transaction, ...]
    undo: tuple[xtables.Transaction, ...]


@dataclass
class UserspaceChange(Change[Desired, UserspaceState]):
    steps: Sequence[Step] = field(default_factory=tuple)


class UserspaceApplier(Applier[Desired, UserspaceState, UserspaceChange]):
    name = "userspace"
    state_schema = UserspaceState

    def __init__(self, options: RenderOptions[Addressing]) -> None:
        super().__init__(options)
        # The one family the backend serves.
        (self.family,) = FAMILIES
        self.addressing = options.backend or Addressing.create()
        # The chains the kernel is read for: this run's prefix, or the one the state names.
        self.prefix = options.chain_prefix
        self.chains = self._chains_for(self.prefix)
        self._live: Snapshot | None = None  # read by marker(), used by the planning that follows

    def _chains_for(self, prefix: str) -> OwnedChains:
        return UserspaceChains.for_prefix(prefix).owned_chains(self.family)

    # -- what we want ----------------------------------------------------------------------

    def desired(self, plan: Plan) -> Desired:
        layout = build_layout(plan, self.addressing.port_range)
        tables = build_tables(plan, layout, self.addressing, self.options, self.family)
        if not self.options.jumps:
            for table in tables:
                table.jumps.clear()
        return Desired(tables)

    def sysctls(self, plan: Plan) -> dict[str, str]:
        # REDIRECT and DNAT to a local address need none (the proxy relays itself).
        return {}

    def udp_facts(self, desired: Desired) -> UdpFacts:
        # No kernel NAT reaches an endpoint: the proxy opens its own sockets to them.
        return {}

    # -- reading the host ------------------------------------------------------------------

    def marker(self, runner: Runner, state: UserspaceState | None) -> str | None:
        if state is not None and state.get("prefix"):
            self.prefix = state["prefix"]
            self.chains = self._chains_for(self.prefix)
        self._live = self.chains.read_live(runner)
        return self.chains.generation(self._live)

    def foreign(self, runner: Runner, state: UserspaceState | None) -> str | None:
        """Chains under our prefix without our marker chain (read by marker()), unless our
        state names that prefix."""
        if state is not None and state.get("prefix") == self.prefix:
            return None
        live = self._live if self._live is not None else self.chains.read_live(runner)
        return self.chains.foreign(live, self.prefix)

    def quick_check(self, runner: Runner, state: UserspaceState) -> bool:
        """Our chains and jumps are still what the state recorded (read by marker())."""
        live = self._live if self._live is not None else self.chains.read_live(runner)
        return state.get("rules") == _digest(self.chains, live)

    def read_live(self, runner: Runner) -> UserspaceState | None:
        # Every plan reads our chains back anyway: an untrusted state costs nothing more.
        return {"backend": self.name, "generation": None, "prefix": self.prefix}

    # -- planning ----------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: UserspaceState | None, trusted: bool, desired: Desired, generation: str
    ) -> UserspaceChange:
        # Desired rules are written with this run's prefix; a different one in the state is
        # another set of chains, removed by cleanup with that prefix.
        chains = self._chains_for(self.options.chain_prefix)
        spelled = chains.kernel_spelling(runner, desired.tables)  # validates them, too
        live = self._live if self._live is not None and chains == self.chains else chains.read_live(runner)
        self._live = None
        new_state: UserspaceState = {
            "backend": self.name,
            "generation": generation,
            "prefix": self.options.chain_prefix,
            "rules": _digest(chains, spelled),
            "udp": {},
        }
        same = chains.comparable(spelled) == chains.comparable(live)
        if same and trusted:
            return UserspaceChange(ChangeKind.NONE, "", "no changes", None, desired)
        steps: list[Step] = []
        summary = "our chains already as compiled: generation recorded"
        if not same:
            payload, undo = chains.rewrite(chains.snapshot(desired.tables), live)
            steps += [Step(f"the {p.table} rules", (p,), (u,)) for p, u in zip(payload, undo, strict=True)]
            summary = _summary(chains.snapshot(desired.tables))
        mark, unmark = chains.mark(generation, live)
        steps.append(Step("the apply marker", tuple(mark), tuple(unmark)))
        kind = ChangeKind.INCREMENTAL if live.chain_count else ChangeKind.FULL
        return UserspaceChange(kind, _payload(steps), summary, new_state, desired, steps=steps)

    def plan_cleanup(self, runner: Runner, old: UserspaceState | None) -> UserspaceChange:
        chains = self._chains_for((old or {}).get("prefix") or self.options.chain_prefix)
        live = chains.read_live(runner)
        removal = chains.removal(live)
        if not removal:
            return UserspaceChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        step = Step("the removal of our chains", tuple(removal), tuple(chains.restoration(live)))
        jumps = sum(len(j) for j in live.jumps.values())
        summary = f"{live.chain_count} chain(s) and {jumps} jump(s) removed"
        return UserspaceChange(ChangeKind.CLEANUP, _payload([step]), summary, None, steps=[step])

    # -- writing -----------------------------------------------------------------------------

    def validate(self, runner: Runner, change: UserspaceChange) -> None:
        # plan_change trial-loaded the rules in a scratch namespace; a cleanup only deletes
        # what was just listed.
        return None

    def load(self, runner: Runner, change: UserspaceChange) -> None:
        chains = self.chains  # any prefix: the steps name their chains, loading needs the family
        done: list[Step] = []
        for step in change.steps:
            try:
                chains.load(runner, step.payload, step.what)
            except ApplyError as exc:
                problems = []
                for earlier in reversed(done):
                    try:
                        chains.load(runner, earlier.undo, f"the undo of {earlier.what}")
                    except ApplyError as undo_failed:
                        problems.append(str(undo_failed))
                if problems:
                    raise ApplyError(
                        f"{exc}; undoing the earlier step(s) failed too: {'; '.join(problems)}"
                    ) from exc
                raise ApplyError(
                    f"{exc}; the {len(done)} earlier step(s) were undone: the host is as it was"
                ) from exc
            done.append(step)

    # -- diff --------------------------------------------------------------------------------

    def dump_live(self, runner: Runner) -> str:
        chains = self._chains_for(self.options.chain_prefix)
        return _lines(chains.dump_lines(chains.read_live(runner)))

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        chains = self._chains_for(self.options.chain_prefix)
        return _lines(chains.dump_lines(chains.kernel_spelling(runner, desired.tables)))


def _digest(chains: OwnedChains, snap: Snapshot) -> str:
    return hashlib.sha256(repr(chains.comparable(snap)).encode()).hexdigest()


def _summary(snap: Snapshot) -> str:
    rules = sum(len(specs) for chains in snap.chains.values() for specs in chains.values())
    jumps = sum(len(j) for j in snap.jumps.values())
    return f"{snap.chain_count} chain(s), {rules} rule(s) and {jumps} jump(s)"


def _payload(steps: Sequence[Step]) -> str:
    return xtables.write(transaction for step in steps for transaction in step.payload)


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
