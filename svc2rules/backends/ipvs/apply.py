"""IPVS applier: reconcile the host with the compiled ruleset over netlink, plus `ipset
restore` and `iptables-restore`, through the shared apply machinery (svc2rules/apply).

Unlike iptables and nftables, IPVS has no transaction and no place for a comment, so:

* every run reads what we own back from the kernel (cheap netlink dumps) and writes only
  the difference, in an order that never black-holes a frontend (reconcile.py); the same
  input twice writes nothing;
* a failed step undoes the steps before it (execute.py);
* ownership: the dummy interface `svc2rules-ipvs0` and the addresses on it, the ipsets and
  `<prefix>-IPVS-*` chains the backend defines, and the virtual servers recorded in the
  `<prefix>-IPVS-OWNED` ipset (written before a virtual server is created) or listening on
  one of our addresses. Other virtual servers are never touched, and one in the way of
  ours stops the apply before any write;
* real servers that go away drain first (weight 0) when they still have connections and
  are deleted by a later apply once IPVS counts none (the state file remembers since when);
* the generation of the last apply is kept in the `<prefix>-IPVS-APPLIED` chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import Applier, BaseState, Change, ChangeKind
from svc2rules.backends.ipvs import ops, proctable, sets
from svc2rules.backends.ipvs.build import build_ruleset
from svc2rules.backends.ipvs.execute import Executor
from svc2rules.backends.ipvs.kernel import Kernel
from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.backends.ipvs.names import DUMMY_INTERFACE, IpvsNames
from svc2rules.backends.ipvs.options import IpvsOptions
from svc2rules.backends.ipvs.reconcile import Live, Wanted, ledger_key, ledger_set, plan
from svc2rules.backends.ipvs.render import FAMILIES
from svc2rules.backends.owned_chains import Snapshot
from svc2rules.family import IPFamily
from svc2rules.host.conntrack import udp_facts
from svc2rules.host.runner import Runner
from svc2rules.ir import Plan
from svc2rules.syntax import iproute, ipset, ipvsadm
from svc2rules.syntax.ipvsadm import VirtualServer


def sysctls_for(family: IPFamily) -> dict[str, str]:
    return {
        family.forwarding_sysctl: "1",
        # IPVS connections must go through conntrack for the companion masquerade rules.
        ipvsadm.sysctl(family, "conntrack"): "1",
        # Packets of a connection whose real server was deleted are dropped at once (the client
        # reconnects to a live one) instead of being sent nowhere until the entry times out.
        ipvsadm.sysctl(family, "expire_nodest_conn"): "1",
        # Persistence templates of a drained (weight 0) real server expire, so ClientIP
        # affinity moves to a live one.
        ipvsadm.sysctl(family, "expire_quiescent_template"): "1",
    }


@dataclass
class Desired:
    plan: Plan
    rules: IpvsRuleset
    names: IpvsNames
    udp: dict[str, dict[str, Any]]


class IpvsState(BaseState, total=False):
    prefix: str
    draining: dict[str, float]
    ipvs_table: dict[str, list[str]]
    addresses: list[str]


@dataclass
class IpvsChange(Change[Desired, IpvsState]):
    # The netlink and tool steps, in order, with their undo (ops.py).
    ops: Sequence[ops.Op] = ()
    counts: dict[str, int] = field(default_factory=dict)


class IpvsApplier(Applier[Desired, IpvsState, IpvsChange]):
    name = "ipvs"
    state_schema = IpvsState

    def __init__(self, options: RenderOptions[IpvsOptions]) -> None:
        super().__init__(options)
        # The one family the backend serves (IPVS itself is per family, like kube-proxy's proxiers).
        (self.family,) = FAMILIES
        self.kernel = Kernel(self.family)
        self.names = IpvsNames.for_prefix(options.chain_prefix)
        self._tables: Snapshot | None = None

    # -- what we want ----------------------------------------------------------------------

    def desired(self, plan: Plan) -> Desired:
        rules = build_ruleset(plan, self.options, self.family)
        return Desired(plan, rules, self.names, udp_facts(plan, plan.for_family(self.family)))

    def sysctls(self, plan: Plan) -> dict[str, str]:
        return sysctls_for(self.family)

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the host ------------------------------------------------------------------

    def marker(self, runner: Runner, state: IpvsState | None) -> str | None:
        if state is not None and state.get("prefix"):
            self.names = IpvsNames.for_prefix(state["prefix"])
        chains = self.names.owned_chains(self.family)
        self._tables = chains.read_live(runner)
        return chains.generation(self._tables)

    def foreign(self, runner: Runner, state: IpvsState | None) -> str | None:
        """Companion chains under our prefix without our marker chain (read by marker()),
        unless our state names that prefix."""
        if state is not None and state.get("prefix") == self.names.prefix:
            return None
        chains = self.names.owned_chains(self.family)
        live = self._tables if self._tables is not None else chains.read_live(runner)
        return chains.foreign(live, self.names.prefix)

    def quick_check(self, runner: Runner, state: IpvsState) -> bool:
        """IPVS and the dummy interface are not under the marker: compare them with what the
        state expects, from one read of /proc/net/ip_vs and one `ip addr`. A real server still
        draining always takes the full path (it may have drained by now)."""
        if state.get("draining") or "ipvs_table" not in state:
            return False
        try:
            table = Path(proctable.PATH).read_text(encoding="ascii")
        except OSError:
            return False
        if not proctable.matches(table, state["ipvs_table"]):
            return False
        result = runner.run(iproute.show_addresses_argv(DUMMY_INTERFACE, self.family))
        return result.ok and sorted(iproute.read_addresses(result.stdout)) == sorted(
            state.get("addresses", [])
        )

    def read_live(self, runner: Runner) -> IpvsState | None:
        # Everything is read back on every run anyway (plan_change); an untrusted state only
        # loses how long real servers have been draining, which restarts now.
        return {
            "backend": self.name,
            "generation": None,
            "prefix": self.options.chain_prefix,
            "draining": {},
            "udp": {},
        }

    def _live(self, runner: Runner, names: IpvsNames, wanted_sets: Iterable[str]) -> Live:
        k = self.kernel
        live = Live()
        index = k.link_index(DUMMY_INTERFACE)
        if index is not None:
            live.dummy_index = index
            live.dummy_kind = k.link_kind(index)
            live.dummy_up = k.link_is_up(index)
            if live.dummy_kind == "dummy":
                live.addresses = frozenset(k.addresses(index))
        live.sets = sets.read_live(runner, wanted_sets)
        ledger = live.sets.get(names.owned_virtual_servers)
        recorded = {key for key in (ledger_key(e) for e in (ledger.entries if ledger else ())) if key}
        foreign = set()
        destinations = k.dump_destinations()
        for vs in k.dump_services():
            if vs.key not in recorded and vs.address not in live.addresses:
                foreign.add(vs.key)
            elif destinations is not None and vs.key in destinations:
                live.services[vs.key] = k.live_service(vs, destinations[vs.key])
            else:
                live.services[vs.key] = k.dump_real_servers(vs)
        live.foreign = frozenset(foreign)
        cached = self._tables if self.names.prefix == names.prefix else None  # read by marker()
        live.tables = cached if cached is not None else names.owned_chains(self.family).read_live(runner)
        self._tables = None
        return live

    # -- planning ----------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: IpvsState | None, trusted: bool, desired: Desired, generation: str
    ) -> IpvsChange:
        names = desired.names
        self.kernel.ipvs()  # no IPVS here: say so before anything else can fail for that reason
        ledger = ledger_set(desired.rules, names)
        spelled = names.owned_chains(self.family).kernel_spelling(
            runner, desired.rules.tables, desired.rules.ipsets
        )
        wanted = Wanted(desired.rules, names, ledger, spelled)
        live = self._live(runner, names, {s.name for s in wanted.sets})
        draining = dict((old or {}).get("draining", {}))
        planned = plan(live, wanted, draining, time.time(), generation)
        new_state: IpvsState = {
            "backend": self.name,
            "generation": generation,
            "prefix": names.prefix,
            "draining": planned.draining,
            "udp": desired.udp,
            "ipvs_table": proctable.expected(list(desired.rules.virtual_servers)),
            "addresses": list(desired.rules.bind_addresses),
        }
        if planned.empty:
            self.kernel.close()
            return IpvsChange(ChangeKind.NONE, "", "no changes", None)
        kind = ChangeKind.INCREMENTAL if live.services or live.sets else ChangeKind.FULL
        payload = "".join(step.describe() + "\n" for step in planned.ops)
        return IpvsChange(
            kind, payload, planned.summary(), new_state, desired, ops=planned.ops, counts=planned.counts
        )

    def plan_cleanup(self, runner: Runner, old: IpvsState | None) -> IpvsChange:
        prefix = (old or {}).get("prefix") or self.options.chain_prefix
        names = IpvsNames.for_prefix(prefix)
        chains = names.owned_chains(self.family)
        known = {*self._known_sets(RenderOptions(chain_prefix=prefix)), names.owned_virtual_servers}
        try:
            live = self._live(runner, names, known)
        except Exception:
            # No IPVS in this kernel: nothing of ours can be there but chains and sets.
            live = Live(sets=sets.read_live(runner, known), tables=chains.read_live(runner))
        steps: list[ops.Op] = []
        for _, service in sorted(live.services.items()):
            steps.append(ops.ServiceDel(service.server))
        if live.dummy_index is not None and live.dummy_kind == "dummy":
            steps.append(ops.LinkDel(DUMMY_INTERFACE, tuple(sorted(live.addresses))))
        removal = chains.removal(live.tables)
        if removal:
            restoration = tuple(chains.restoration(live.tables))
            steps.append(
                ops.IptablesRestore(chains, tuple(removal), restoration, "the removal of our chains")
            )
        if live.sets:
            destroy = tuple(ipset.Destroy(name) for name in sorted(live.sets))
            recreate = tuple(command for s in live.sets.values() for command in ipset.filled(s))
            steps.append(ops.IpsetRestore(destroy, recreate, ops.REMOVE))
        self.kernel.close()
        if not steps:
            return IpvsChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        summary = (
            f"{len(live.services)} virtual server(s), the dummy interface "
            f"({len(live.addresses)} address(es)), {live.tables.chain_count} chain(s) "
            f"and {len(live.sets)} ipset(s) removed"
        )
        payload = "".join(step.describe() + "\n" for step in steps)
        return IpvsChange(ChangeKind.CLEANUP, payload, summary, None, ops=steps)

    def _known_sets(self, options: RenderOptions[Any]) -> set[str]:
        """The names of every ipset the backend defines for these options."""
        return {s.name for s in build_ruleset(_EMPTY_PLAN, options, self.family).ipsets}

    # -- writing -----------------------------------------------------------------------------

    def validate(self, runner: Runner, change: IpvsChange) -> None:
        # The companion rules and our sets were trial-loaded in a scratch namespace while
        # planning (tables.kernel_spelling); IPVS itself has nothing to trial.
        return None

    def load(self, runner: Runner, change: IpvsChange) -> None:
        try:
            Executor(self.kernel, runner).run(change.ops)
        finally:
            self.kernel.close()

    # -- diff --------------------------------------------------------------------------------

    def dump_live(self, runner: Runner) -> str:
        names = IpvsNames.for_prefix(self.options.chain_prefix)
        known = self._known_sets(self.options)
        live = self._live(runner, names, {*known, names.owned_virtual_servers})
        self.kernel.close()
        servers = [s.server for _, s in sorted(live.services.items())]
        ipsets = [s for name, s in live.sets.items() if name in known]
        chains = names.owned_chains(self.family)
        return _dump(live.addresses, ipsets, chains.dump_lines(live.tables), servers)

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        rules = desired.rules
        chains = desired.names.owned_chains(rules.family)
        spelled = chains.kernel_spelling(runner, rules.tables, rules.ipsets)
        return _dump(
            rules.bind_addresses,
            rules.ipsets,
            chains.dump_lines(spelled),
            sorted(rules.virtual_servers, key=lambda vs: vs.key),
        )


def _dump(
    addresses: Iterable[str],
    ipsets: Iterable[ipset.IpSet],
    iptables_lines: list[str],
    servers: list[VirtualServer],
) -> str:
    out = [f"dummy {DUMMY_INTERFACE}: address {iproute.host_address(a)}" for a in sorted(addresses)]
    for s in sorted(ipsets, key=lambda s: s.name):
        out.extend(f"ipset {s.name}: {line}" for line in sorted(_entry_lines(s)))
    out.extend(iptables_lines)
    for vs in servers:
        out.append(f"ipvs: {ipvsadm.add_service(vs)}")
        out.extend(f"ipvs: {ipvsadm.add_real_server(vs, rs)}" for rs in sorted(vs.real_servers))
    return "\n".join(out) + "\n" if out else ""


def _entry_lines(s: ipset.IpSet) -> list[str]:
    """The set's entries as `ipset save` prints them after the set's name."""
    prefix = f"add {s.name} "
    return [ipset.Add(s.name, e).line().removeprefix(prefix) for e in s.entries]


def _empty_plan() -> Plan:
    from svc2rules.config import ProxyConfig

    return Plan(ProxyConfig(), (), ())


_EMPTY_PLAN = _empty_plan()
