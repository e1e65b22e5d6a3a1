"""iptables applier: incremental, validated `iptables-restore --noflush` writes.

    desired / plan_from_services -> plan.diff_table (pure) -> one side-by-side listing of the
    chains to confirm and of our jumps -> plan.confirm, plan.fix_jumps (pure) -> ops.transactions
    (the order and cut of the sections) -> the syntax layer's writer -> validate (reads the
    payload back) -> kernel.restore

* A one-Service change writes only that Service's chains plus positional `-D`/`-I`/`-R`
  edits of the long shared chains, at positions taken from the state file (confirmed by
  listing those chains: nobody inserted into them).
* A full load is cut into three sections so that no crash of the loader can leave our DNAT
  reachable without our filter rules (ops.py).
* The loader runs to its end even if `apply` dies, and holds our lock meanwhile (host
  runner): whoever takes the lock next sees the old or the new ruleset.
* Each table carries a marker chain naming the generation written; the marker tells the
  engine whether the state file still describes the kernel.

The applier holds its render options and the chain names they imply, nothing else: every
method is a function of its arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import ChangeKind, IncrementalApplier
from svc2rules.backends.iptables import kernel, ops, plan, validate
from svc2rules.backends.iptables.incremental import plan_from_services
from svc2rules.backends.iptables.model import (
    TABLES,
    Chains,
    Desired,
    IptablesChange,
    IptablesState,
    StoredChains,
    by_service_state,
    flat,
    marker_rule,
    sysctls,
)
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.backends.iptables.render import FAMILY, build_tables
from svc2rules.backends.iptables.services import split_by_service
from svc2rules.backends.owned_chains import foreign_chains
from svc2rules.errors import ApplyError
from svc2rules.host.conntrack import udp_facts
from svc2rules.host.runner import Runner, first_line
from svc2rules.ir import Plan
from svc2rules.syntax.xtables import (
    Command,
    DeclareChain,
    DeleteChain,
    DeleteRule,
    Jump,
    Rule,
    Table,
    Transaction,
    error_line,
    parse_restore,
    transaction_of,
    write,
)

if TYPE_CHECKING:
    from svc2rules.compile import Compilation


class IptablesApplier(IncrementalApplier[Desired, IptablesState, IptablesChange]):
    name = "iptables"
    bulk_state_keys = ("tables", "udp", "groups", "segments", "owned")
    state_schema = IptablesState

    def __init__(self, options: RenderOptions[None]) -> None:
        super().__init__(options)
        self.names = ChainNames(options.chain_prefix)

    def _names(self, state: IptablesState | None) -> ChainNames:
        """The names a state was written with (it may predate a change of --chain-prefix)."""
        prefix = state.get("prefix") if state is not None else None
        return ChainNames(prefix) if prefix and prefix != self.names.prefix else self.names

    # -- what we want ----------------------------------------------------------------------

    def desired(self, plan: Plan) -> Desired:
        return self._desired(plan, None)

    def desired_with_services(self, plan: Plan, services: dict[str, str]) -> Desired:
        return self._desired(plan, services)

    def _desired(self, plan: Plan, services: dict[str, str] | None) -> Desired:
        """The tables for a plan; given the Services' fingerprints (`namespace/name` -> hex),
        also what the state needs to plan the next run Service by Service."""
        options = self.options
        by_service: dict[str, Any] | None = None
        owned_chains: dict[str, set[str]] = {}
        if services is None:
            tables, _ = build_tables(plan, options)
        else:
            tables, parts = split_by_service(plan, options)
            by_service = by_service_state(plan, options, services, parts)
            owned_chains = {t: {c for p in parts.values() for c in p.chains.get(t, {})} for t in TABLES}
        chains: dict[str, Chains] = {}
        jumps: dict[str, list[tuple[str, str]]] = {}
        for table in tables:
            chains[table.name] = {c: [] for c in table.chains}
            for rule in table.rules:
                chains[table.name][rule.chain].append(rule.spec)
            jumps[table.name] = [(j.chain, j.spec) for j in table.jumps] if options.jumps else []
        udp = udp_facts(plan, plan.for_family(FAMILY))
        return Desired(plan, options, self.names, chains, jumps, udp, by_service, owned_chains)

    def sysctls(self, plan: Plan) -> dict[str, str]:
        return sysctls(plan.config, sum(1 for sp in plan.service_ports if sp.node_port))

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the kernel ----------------------------------------------------------------

    def marker(self, runner: Runner, state: IptablesState | None) -> str | None:
        return kernel.generation(runner, self._names(state))

    def foreign(self, runner: Runner, state: IptablesState | None) -> str | None:
        """Chains under our prefix without our marker chain in either table (empty or not) are
        someone else's, unless our state names that prefix. Asked only without a marker, so
        the save it costs is a first run's (or a foreign prefix's)."""
        if state is not None and state.get("prefix") == self.names.prefix:
            return None
        tables = kernel.saved_tables(runner)
        marker = self.names.applied_marker
        if any(marker in table.chains for table in tables.values()):
            return None
        found = [(t, c) for t in TABLES for c in sorted(tables[t].chains) if self.names.owns(c)]
        if not found:
            return None
        table, chain = found[0]
        return foreign_chains(self.names.prefix, table, chain, len(found), marker)

    def quick_check(self, runner: Runner, state: IptablesState) -> bool:
        """Our jumps from the built-in chains are where foreign tools interfere (a firewall
        reload flushing INPUT); the marker covers our own chains."""
        live = kernel.our_jumps(runner, self._names(state))
        for table in TABLES:
            wanted = [(chain, spec) for chain, spec in state.get("jumps", {}).get(table, [])]
            if plan.fix_jumps(live.get(table, {}), wanted):
                return False
        return True

    def read_live(self, runner: Runner) -> IptablesState | None:
        owned = kernel.owned(kernel.saved_tables(runner), self.names)
        return {
            "backend": self.name,
            "generation": None,
            "prefix": self.names.prefix,
            "tables": owned.chains,
            "jumps_live": owned.jumps,
            "udp": {},
        }

    # -- planning --------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: IptablesState | None, trusted: bool, desired: Desired, generation: str
    ) -> IptablesChange:
        by_service = desired.by_service
        # Chains a Service owns are kept with it (by_service["owned"]), the rest here.
        owned = desired.owned_chains
        shared = {
            t: {c: "\n".join(r) for c, r in desired.tables.get(t, {}).items() if c not in owned.get(t, ())}
            for t in TABLES
        }
        whole = flat(old)
        old_tables: dict[str, StoredChains] = (whole or {}).get("tables", {})
        live_jumps = None if trusted and old is not None else (old or {}).get("jumps_live", {})
        change = self._change(
            runner, old_tables, trusted, desired, generation, desired.tables, shared, None, live_jumps
        )
        if change.kind == ChangeKind.NONE and by_service is not None and whole is not None:
            # Nothing to load, but the state learns its per-Service form (from an older one).
            kept = {
                t: {c: v for c, v in chains.items() if c not in owned.get(t, ())}
                for t, chains in whole["tables"].items()
            }
            change.state_update = {**by_service, "tables": kept}
        return change

    def plan_services(
        self, runner: Runner, old: IptablesState, compiled: Compilation, generation: str
    ) -> IptablesChange | None:
        """The change from the changed Services alone, or None when it needs the whole plan
        (incremental.py)."""
        write = plan_from_services(old, compiled, self.options, self.names)
        if write is None:
            return None
        change = self._change(
            runner,
            write.before,
            True,
            write.desired,
            generation,
            write.compare,
            write.shared,
            write.removable,
        )
        change.sysctls = write.sysctls
        marker = self.names.applied_marker
        change.touched = {
            "tables": {t: [*(c for c in write.compare[t] if c in write.shared[t]), marker] for t in TABLES}
        }
        return change

    def _change(
        self,
        runner: Runner,
        old_tables: dict[str, StoredChains],
        trusted: bool,
        desired: Desired,
        generation: str,
        compare: dict[str, Chains],
        shared: dict[str, StoredChains],
        removable: dict[str, list[str]] | None,
        live_jumps: dict[str, dict[str, list[str]]] | None = None,
    ) -> IptablesChange:
        """The write turning `old_tables` into `compare` (every chain we want, or with
        `removable` only those that may have changed, plus the chains that may have gone),
        and the state it leaves (`shared`: what the state keeps outside the Services' records).
        `live_jumps`: our jumps as read back (None: list them now)."""
        names = desired.names
        marker = names.applied_marker
        full = not trusted
        diffs = {
            table: plan.diff_table(
                old_tables.get(table, {}),
                compare.get(table, {}),
                full=full,
                removable=removable.get(table, []) if removable is not None else None,
                keep=frozenset((marker,)),
            )
            for table in TABLES
        }
        # One side-by-side listing: our jumps (unless read back already) and the chains whose
        # positional edits depend on their live length.
        to_confirm = [(table, chain) for table in TABLES for chain in plan.edits_to_confirm(diffs[table])]
        jump_chains = kernel.builtin_chain_listings(TABLES) if live_jumps is None else []
        listed = kernel.list_chains(runner, jump_chains + to_confirm) if jump_chains or to_confirm else []
        if live_jumps is None:
            live_jumps = kernel.jumps_to_us(jump_chains, listed[: len(jump_chains)], names)
        lengths: dict[str, dict[str, int | None]] = {table: {} for table in TABLES}
        for (table, chain), rules in zip(to_confirm, listed[len(jump_chains) :], strict=True):
            lengths[table][chain] = None if rules is None else len(rules)
        plans = [
            ops.TablePlan(
                table,
                plan.confirm(diffs[table], lengths[table]),
                plan.fix_jumps(live_jumps.get(table, {}), desired.jumps.get(table, [])),
                ops.WriteMarker(marker, marker_rule(generation)),
            )
            for table in TABLES
        ]
        counts = {
            key: sum(p.counts()[key] for p in plans) for key in ("written", "edited", "removed", "jumps")
        }
        if trusted and not any(p.touched or p.jumps for p in plans):
            return IptablesChange(ChangeKind.NONE, "", "no changes", None, state_update=desired.by_service)
        for table in TABLES:
            shared[table][marker] = marker_rule(generation)
        new_state = cast(
            IptablesState,
            {
                "backend": self.name,
                "generation": generation,
                "prefix": names.prefix,
                "tables": shared,
                "jumps": {t: [list(j) for j in desired.jumps.get(t, [])] for t in TABLES},
                "udp": desired.udp,
                **(desired.by_service or {}),
            },
        )
        kind = ChangeKind.FULL if full else ChangeKind.INCREMENTAL
        summary = (
            f"{kind}: {counts['written']} chain(s) written, {counts['edited']} rule(s) edited in place, "
            f"{counts['removed']} chain(s) removed, {counts['jumps']} jump(s) fixed"
        )
        payload = write(ops.transactions(plans, full=full))
        return IptablesChange(kind, payload, summary, new_state, desired, old_tables=old_tables, prep=full)

    def plan_cleanup(self, runner: Runner, old: IptablesState | None) -> IptablesChange:
        # Cleanup always reads the kernel: it must remove what we own even without a state.
        owned = kernel.owned(kernel.saved_tables(runner), self.names)
        transactions = []
        count = 0
        for table in TABLES:
            chains = list(owned.chains.get(table, {}))
            jumps = owned.jumps.get(table, {})
            if not chains and not jumps:
                continue
            commands: list[Command] = [
                DeleteRule(chain, spec) for chain, specs in jumps.items() for spec in specs
            ]
            commands += [DeclareChain(chain) for chain in chains]
            commands += [DeleteChain(chain) for chain in chains]
            transactions.append(Transaction(table, commands, len(chains) > ops.FETCH_TABLE_ABOVE))
            count += len(chains)
        if not transactions:
            return IptablesChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        return IptablesChange(
            ChangeKind.CLEANUP, write(transactions), f"{count} chain(s) and their jumps removed", None
        )

    # -- validation and loading ------------------------------------------------------------

    def validate(self, runner: Runner, change: IptablesChange) -> None:
        transactions = self._read(change)
        if change.kind != ChangeKind.CLEANUP:
            validate.check_references(change, transactions, self.names.prefix)
        text = write(validate.tested(transactions))
        result = kernel.restore(runner, text, test=True)
        if not result.ok:
            raise validate.fail(
                "iptables-restore --test refused the ruleset", result, text.splitlines(), change.desired
            )
        if change.kind == ChangeKind.CLEANUP:
            return
        trial = validate.trial(transactions, change.old_tables, self.names.prefix, self.names.applied_marker)
        if not trial:
            return
        prep, offset = kernel.builtin_chains_text()
        text = prep + write(trial)
        result = kernel.restore_in_scratch(runner, text)
        if kernel.scratch_failed_to_start(result) or (not result.ok and _in_prep(result.stderr, offset)):
            raise ApplyError(
                f"cannot create a scratch network namespace to validate in: {first_line(result.stderr)}"
            )
        if not result.ok:
            raise validate.fail(
                "the kernel refused the ruleset in a scratch namespace",
                result,
                text.splitlines()[offset:],
                change.desired,
                offset,
            )

    def _read(self, change: IptablesChange) -> list[Transaction]:
        """The payload, read back: what is checked is exactly what would be loaded."""
        try:
            return parse_restore(change.payload)
        except ValueError as exc:
            raise ApplyError(f"the planned write is not iptables-restore input: {exc}") from exc

    def load(self, runner: Runner, change: IptablesChange) -> None:
        prep, offset = kernel.builtin_chains_text() if change.prep else ("", 0)
        result = kernel.restore(runner, prep + change.payload)
        if result.ok:
            return
        if _in_prep(result.stderr, offset):
            raise validate.fail(
                "iptables-restore refused to create the built-in chains", result, [], change.desired
            )
        raise validate.fail(
            "the kernel refused the ruleset; the host keeps its previous rules",
            result,
            change.payload.splitlines(),
            change.desired,
            offset,
        )

    # -- diff ------------------------------------------------------------------------------

    def dump_live(self, runner: Runner) -> str:
        tables = kernel.saved_tables(runner)
        out = [line for table in TABLES for line in kernel.owned_lines(tables[table], self.names)]
        return "\n".join(out) + "\n" if out else ""

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        """The compiled objects in the kernel's spelling: loaded into a scratch namespace and
        listed back, so the diff shows real differences, not formatting."""
        sections = []
        for table in TABLES:
            chains = desired.tables.get(table, {})
            whole = transaction_of(_table(table, chains, desired.jumps.get(table, [])))
            whole.fetch_table = len(chains) > ops.FETCH_TABLE_ABOVE
            sections.append(whole)
        prep, _ = kernel.builtin_chains_text()
        result = kernel.restore_in_scratch(
            runner, prep + write([*sections, *kernel.listing_sections(TABLES)])
        )
        if not result.ok:
            raise ApplyError(
                f"cannot load the compiled rules in a scratch namespace: {first_line(result.stderr)}"
            )
        listed = kernel.last_listings(result.stdout, TABLES)
        out = [line for table in TABLES for line in kernel.owned_lines(listed[table], desired.names)]
        return "\n".join(out) + "\n" if out else ""


def _in_prep(stderr: str, offset: int) -> bool:
    """Whether a refusal names a line of the sections that create the built-in chains."""
    number = error_line(stderr)
    return number is not None and number <= offset


def _table(name: str, chains: Chains, jumps: list[tuple[str, str]]) -> Table:
    return Table(
        name,
        list(chains),
        [Rule(chain, spec) for chain, rules in chains.items() for spec in rules],
        [Jump(chain, spec) for chain, spec in jumps],
    )
