"""nftables applier: our table replaced in one `nft -f` transaction, or updated element by element.

The compiled script replaces `table ip <name>` whole in one transaction, so a refused or
interrupted load leaves the previous table untouched. The default layout keeps every
per-Service fact in map and set elements, so once the table's *skeleton* (chains, rules,
declarations: everything but elements) is unchanged, a change is a handful of
`delete element` / `add element` commands — ~10 ms at any size, where any command that
touches a chain makes `nft` read the whole table first (~1 s at 10k Services).

The applier compares objects (model.py), plans with planner.py (or services.py, from the
changed Services alone), has the syntax layer's writer spell the change, and runs nft through
kernel.py. The state keeps the skeleton's digests and every element; the kernel carries the
applied generation in an empty set's comment (`nft list set` reads only that set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import ChangeKind, IncrementalApplier
from svc2rules.backends.nftables import kernel, planner, services
from svc2rules.backends.nftables.model import (
    Desired,
    NftablesChange,
    NftablesState,
    Skeleton,
    elements_of,
)
from svc2rules.backends.nftables.options import DEFAULT_LAYOUT, NftablesOptions
from svc2rules.backends.nftables.render import (
    FAMILY,
    build_table,
    check_table_name,
    element_comments,
    layout_name,
)
from svc2rules.host.conntrack import UdpFacts, udp_facts
from svc2rules.host.runner import Runner
from svc2rules.host.system import TCP_BE_LIBERAL_SYSCTL
from svc2rules.ir import Plan
from svc2rules.syntax.nftables import Writer, commands

if TYPE_CHECKING:
    from svc2rules.compile import Compilation
    from svc2rules.resolve.plan import ServiceResolution


class NftablesApplier(IncrementalApplier[Desired, NftablesState, NftablesChange]):
    name = "nftables"
    bulk_state_keys = ("elements", "udp", "groups", "shared", "facts")
    state_schema = NftablesState
    loads_whole = True  # `nft -f` is one transaction

    def __init__(self, options: RenderOptions[NftablesOptions]) -> None:
        super().__init__(options)
        # Fixed by the options: nothing below is reassigned.
        self.table_name = check_table_name(options.table)
        self.layout = layout_name(options)

    def desired(self, plan: Plan) -> Desired:
        return self._desired(plan, None)

    def desired_with_services(self, plan: Plan, services: dict[str, str]) -> Desired:
        return self._desired(plan, services)

    def _desired(self, plan: Plan, fingerprints: dict[str, str] | None) -> Desired:
        """The table for a plan; given the Services' fingerprints (`namespace/name` -> hex),
        also what the state needs to plan the next run Service by Service."""
        options = self.options
        journal = services.Journal() if fingerprints is not None and self.layout == DEFAULT_LAYOUT else None
        table, _, layout = build_table(plan, options, observer=journal)
        ports = plan.for_family(FAMILY)
        by_service = None
        if journal is not None and fingerprints is not None:
            by_service = {
                "groups": fingerprints,
                "ctx": services.service_context(
                    plan.config, options, element_comments(ports, options), plan.service_cidrs
                ),
                "totals": {"endpoints": services.endpoint_total(plan.service_ports)},
                **journal.state(),
            }
        return Desired(
            plan,
            self.table_name,
            layout,
            table,
            Skeleton.of(table, layout),
            elements_of(table),
            udp_facts(plan, ports),
            by_service,
        )

    def sysctls(self, plan: Plan) -> dict[str, str]:
        # This layout never matches loopback NodePorts, so route_localnet is not needed.
        wanted = {FAMILY.forwarding_sysctl: "1"}
        # kube-proxy's nftables mode has no `ct state invalid drop`: out-of-window packets are
        # let through by conntrack instead (conntrack.tcpBeLiberal, on unless turned off).
        if plan.config.conntrack_tcp_be_liberal is not False:
            wanted[TCP_BE_LIBERAL_SYSCTL] = "1"
        return wanted

    def udp_facts(self, desired: Desired) -> UdpFacts:
        return desired.udp

    # -- reading the kernel ----------------------------------------------------------------

    def marker(self, runner: Runner, state: NftablesState | None) -> str | None:
        table = (state or {}).get("table") or self.table_name
        return kernel.read_marker(runner, FAMILY, table)

    def foreign(self, runner: Runner, state: NftablesState | None) -> str | None:
        """A table of our name without our marker set is someone else's (a docker-like
        `table ip filter` given as --table filter), unless our state names it."""
        if state is not None and state.get("table") == self.table_name:
            return None
        return kernel.foreign_table(runner, FAMILY, self.table_name)

    # quick_check and read_live keep the contract's defaults: the table is ours whole (the
    # marker in it is the check), and without a trusted state we load the whole table, which
    # replaces whatever is there in the same transaction (reading it back: ~10 s at 10k).

    # -- planning --------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: NftablesState | None, trusted: bool, desired: Desired, generation: str
    ) -> NftablesChange:
        return planner.plan(old, trusted, desired, generation, Writer(FAMILY, desired.table_name))

    def plan_services(
        self, runner: Runner, old: NftablesState, compiled: Compilation, generation: str
    ) -> NftablesChange | None:
        """The change from the changed Services alone, or None when it needs the whole plan:
        the state has no per-Service entries, something every Service's elements depend on
        changed, the previous version of a changed Service is unknown, two Services offer the
        same key differently, or the set of chains and maps the table needs changes."""
        options = self.options
        old_groups, elements, shared = old.get("groups"), old.get("elements"), old.get("shared")
        facts, totals = old.get("facts"), old.get("totals")
        if (
            compiled.memo is None
            or old.get("conflicts") is not False
            or self.layout != DEFAULT_LAYOUT
            or not isinstance(old_groups, dict)
            or not isinstance(elements, dict)
            or not isinstance(shared, dict)
            or not isinstance(facts, dict)
            or not isinstance(totals, dict)
        ):
            return None
        groups = compiled.service_groups()
        changed = [name for name, fp in groups.items() if old_groups.get(name) != fp]
        changed += [name for name in old_groups if name not in groups]
        before: dict[str, ServiceResolution] = {}
        for name in changed:
            if name in old_groups:
                resolution = compiled.remembered(bytes.fromhex(old_groups[name]))
                if resolution is None:
                    return None
                before[name] = resolution
        entries = compiled.entries_named(changed)
        after = {name: compiled.resolution(entry) for name, entry in entries.items()}
        config = compiled.config
        endpoints = totals.get("endpoints", 0)
        endpoints -= sum(services.endpoint_total(r.service_ports) for r in before.values())
        endpoints += sum(services.endpoint_total(r.service_ports) for r in after.values())
        comments_on = options.comments.per_endpoint(endpoints)
        cidrs = compiled.plan_service_cidrs()
        ctx = services.service_context(config, options, comments_on, cidrs)
        if ctx != old.get("ctx"):
            return None

        empty = services.Contribution.of(config, (), options, comments_on, None, cidrs)
        old_parts = [
            services.Contribution.of(config, r.service_ports, options, comments_on, empty, cidrs)
            for r in before.values()
        ]
        new_parts = [
            services.Contribution.of(config, r.service_ports, options, comments_on, empty, cidrs)
            for r in after.values()
        ]
        moved = services.move(elements, shared, facts, old_parts, new_parts)
        if moved is None:
            return None
        ports = tuple(
            sp for r in (*before.values(), *after.values()) for sp in services.ours(r.service_ports)
        )
        by_service: dict[str, Any] = {
            "groups": groups,
            "ctx": ctx,
            "totals": {"endpoints": endpoints},
            "shared": moved.shared,
            "facts": moved.facts,
            "conflicts": False,
        }
        desired = Desired(
            Plan(config, ports, (), cidrs),
            self.table_name,
            self.layout,
            None,
            None,
            moved.elements,
            services.moved_udp(old.get("udp", {}), before, after),
            by_service,
            moved.touched,
        )
        change = self.plan_change(runner, old, True, desired, generation)
        change.sysctls = self.sysctls(desired.plan)
        change.touched = {"elements": dict(moved.touched)}
        return change

    def plan_cleanup(self, runner: Runner, old: NftablesState | None) -> NftablesChange:
        if not kernel.has_table(runner, FAMILY, self.table_name):
            return NftablesChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        writer = Writer(FAMILY, self.table_name)
        tx = writer.transaction()
        tx.delete_table()
        return NftablesChange(ChangeKind.CLEANUP, tx.text(), f"table {writer.prefix} removed", None)

    # -- validation and loading ------------------------------------------------------------

    def validate(self, runner: Runner, change: NftablesChange) -> None:
        if change.kind == ChangeKind.FULL:
            # A full load is one transaction that the kernel either takes whole or refuses
            # whole; `nft -c` first would double its cost (1.3 s at 10k Services) for nothing.
            return
        result = kernel.run_script(runner, change.payload, check=True)
        if not result.ok:
            raise kernel.refusal("nft -c refused the ruleset", result, change)

    def load(self, runner: Runner, change: NftablesChange) -> None:
        result = kernel.run_script(runner, change.payload, check=False)
        if not result.ok:
            if change.kind == ChangeKind.CLEANUP and commands.is_missing(result.stderr):
                return
            raise kernel.refusal(
                "the kernel refused the ruleset; the host keeps its previous rules", result, change
            )

    # -- diff ------------------------------------------------------------------------------

    def dump_live(self, runner: Runner) -> str:
        return kernel.live_listing(runner, FAMILY, self.table_name)

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        return kernel.scratch_listing(runner, desired)
