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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import Applier, BaseState, Change, ChangeKind
from svc2rules.backends.ipvs import ops, proctable, sets, tables
from svc2rules.backends.ipvs.build import build_ruleset
from svc2rules.backends.ipvs.execute import Executor
from svc2rules.backends.ipvs.kernel import Kernel
from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.backends.ipvs.names import DUMMY_INTERFACE, IpvsNames
from svc2rules.backends.ipvs.options import IpvsOptions
from svc2rules.backends.ipvs.reconcile import Key, Live, Wanted, ledger_set, plan
from svc2rules.family import IPFamily
from svc2rules.host.conntrack import udp_facts
from svc2rules.host.runner import Runner
from svc2rules.ir import Plan

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # IPVS connections must go through conntrack for the companion masquerade rules.
    "net.ipv4.vs.conntrack": "1",
    # Packets of a connection whose real server was deleted are dropped at once (the client
    # reconnects to a live one) instead of being sent nowhere until the entry times out.
    "net.ipv4.vs.expire_nodest_conn": "1",
    # Persistence templates of a drained (weight 0) real server expire, so ClientIP
    # affinity moves to a live one.
    "net.ipv4.vs.expire_quiescent_template": "1",
}


@dataclass
class Desired:
    plan: Plan
    rules: IpvsRuleset
    names: IpvsNames
    udp: dict[str, dict[str, Any]]


def _ledger_key(entry: str) -> Key | None:
    element = sets.entry_key(entry)
    address, _, rest = element.partition(",")
    protocol, _, port = rest.partition(":")
    return (protocol, address, int(port)) if port.isdigit() else None


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

    def __init__(self, options: RenderOptions[IpvsOptions]) -> None:
        super().__init__(options)
        self.kernel = Kernel()
        self.names = IpvsNames.for_prefix(options.chain_prefix)
        self._tables: tables.Snapshot | None = None

    # -- what we want ----------------------------------------------------------------------

    def desired(self, plan: Plan) -> Desired:
        rules = build_ruleset(plan, self.options)
        return Desired(plan, rules, self.names, udp_facts(plan, plan.for_family(IPFamily.IPv4)))

    def sysctls(self, plan: Plan) -> dict[str, str]:
        return dict(SYSCTLS)

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the host ------------------------------------------------------------------

    def marker(self, runner: Runner, state: IpvsState | None) -> str | None:
        if state is not None and state.get("prefix"):
            self.names = IpvsNames.for_prefix(state["prefix"])
        self._tables = tables.read_live(runner, self.names)
        return self._tables.generation(self.names)

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
        result = runner.run(["ip", "-4", "-o", "address", "show", "dev", DUMMY_INTERFACE])
        bound = sorted(w.split("/")[0] for line in result.stdout.splitlines() for w in line.split()[3:4])
        return result.ok and bound == sorted(state.get("addresses", []))

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

    def _live(self, runner: Runner, names: IpvsNames, wanted_sets: set[str]) -> Live:
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
        recorded = {key for key in (_ledger_key(e) for e in (ledger.entries if ledger else ())) if key}
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
        live.tables = cached if cached is not None else tables.read_live(runner, names)
        self._tables = None
        return live

    # -- planning ----------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: IpvsState | None, trusted: bool, desired: Desired, generation: str
    ) -> IpvsChange:
        names = desired.names
        self.kernel.ipvs()  # no IPVS here: say so before anything else can fail for that reason
        ledger = ledger_set(desired.rules, names)
        wanted = Wanted(desired.rules, names, ledger, tables.kernel_spelling(runner, desired.rules, names))
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
        known = {s.name for s in build_ruleset(_EMPTY_PLAN, RenderOptions(chain_prefix=prefix)).ipsets}
        known.add(names.owned_virtual_servers)
        try:
            live = self._live(runner, names, known)
        except Exception:
            # No IPVS in this kernel: nothing of ours can be there but chains and sets.
            live = Live(sets=sets.read_live(runner, known), tables=tables.read_live(runner, names))
        steps: list[ops.Op] = []
        for _, service in sorted(live.services.items()):
            steps.append(ops.ServiceDel(service.server))
        if live.dummy_index is not None and live.dummy_kind == "dummy":
            steps.append(ops.LinkDel(DUMMY_INTERFACE, tuple(sorted(live.addresses))))
        removal = tables.removal(live.tables)
        if removal is not None:
            steps.append(
                ops.IptablesRestore(removal, tables.restoration(live.tables), "the removal of our chains")
            )
        if live.sets:
            destroy = tuple(f"destroy {name}" for name in sorted(live.sets))
            recreate = tuple(
                line
                for s in live.sets.values()
                for line in (
                    f"create {s.name} {s.kind} {' '.join(s.options)}",
                    *(f"add {s.name} {e}" for e in s.entries),
                )
            )
            steps.append(ops.IpsetRestore(destroy, recreate, ops.REMOVE))
        self.kernel.close()
        if not steps:
            return IpvsChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        summary = (
            f"{len(live.services)} virtual server(s), the dummy interface "
            f"({len(live.addresses)} address(es)), {sum(len(c) for c in live.tables.chains.values())} chain(s) "
            f"and {len(live.sets)} ipset(s) removed"
        )
        payload = "".join(step.describe() + "\n" for step in steps)
        return IpvsChange(ChangeKind.CLEANUP, payload, summary, None, ops=steps)

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
        known = {s.name for s in build_ruleset(_EMPTY_PLAN, self.options).ipsets}
        live = self._live(runner, names, {*known, names.owned_virtual_servers})
        self.kernel.close()
        servers = [s.server for _, s in sorted(live.services.items())]
        ipsets = [(name, s) for name, s in live.sets.items() if name in known]
        return _dump(live.addresses, ipsets, tables.dump_lines(live.tables, names), servers)

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        rules = desired.rules
        spelled = tables.kernel_spelling(runner, rules, desired.names)
        return _dump(
            rules.bind_addresses,
            ((s.name, s) for s in rules.ipsets),
            tables.dump_lines(spelled, desired.names),
            sorted(rules.virtual_servers, key=lambda vs: vs.key),
        )


def _dump(addresses: Any, ipsets: Any, iptables_lines: list[str], servers: list[Any]) -> str:
    out = [f"dummy {DUMMY_INTERFACE}: address {a}/32" for a in sorted(addresses)]
    for name, s in sorted(ipsets, key=lambda item: item[0]):
        out.extend(f"ipset {name}: {entry}" for entry in sorted(s.entries))
    out.extend(iptables_lines)
    for vs in servers:
        out.append(f"ipvs: {vs.service_line()}")
        out.extend(f"ipvs: {vs.real_server_line(rs)}" for rs in sorted(vs.real_servers))
    return "\n".join(out) + "\n" if out else ""


def _empty_plan() -> Plan:
    from svc2rules.config import ProxyConfig

    return Plan(ProxyConfig(), (), ())


_EMPTY_PLAN = _empty_plan()
