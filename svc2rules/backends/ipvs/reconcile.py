"""Live host + compiled ruleset -> the smallest ordered list of steps (pure: no kernel here).

IPVS, the dummy interface and ipsets are not transactional, so the order is what keeps
traffic flowing while an apply runs:

  prepare  the dummy interface and missing ipsets exist
  add      new ipset entries (and our record of the virtual servers we are about to own);
           the companion iptables rules if they differ; new virtual servers with all their
           real servers; changed scheduler/persistence in place (`-E`, never delete + add);
           new real servers; real servers coming back to weight 1
  switch   only now new addresses go on the dummy interface: the first packet to a new VIP
           already finds its virtual server and real servers
  remove   real servers that go away: weight 0 if they still have connections (they drain:
           no new connections, existing ones continue; deleted by a later apply once the
           kernel counts no active or inactive connection), deleted at once otherwise;
           addresses, then virtual servers, that are no longer wanted; stale ipset entries
  finish   the applied generation is recorded in the kernel

A frontend present before and after never loses its virtual server or its real servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from svc2rules.backends.ipvs import ops
from svc2rules.backends.ipvs.build import hash_options
from svc2rules.backends.ipvs.kernel import FWD_MASQ, LiveService
from svc2rules.backends.ipvs.model import IpvsRuleset, Key
from svc2rules.backends.ipvs.names import IpvsNames
from svc2rules.backends.ipvs.sets import compatible, spelled
from svc2rules.backends.owned_chains import OwnedChains, Snapshot
from svc2rules.errors import ApplyError
from svc2rules.syntax import ipset
from svc2rules.syntax.ipset import Entry, IpSet
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer


@dataclass
class Live:
    """What the host has: the dummy interface, our virtual servers, ipsets and chains."""

    dummy_index: int | None = None
    dummy_up: bool = False
    dummy_kind: str | None = None
    addresses: frozenset[str] = frozenset()
    services: dict[Key, LiveService] = field(default_factory=dict)  # ours, with real servers
    foreign: frozenset[Key] = frozenset()  # virtual servers that are not ours
    sets: dict[str, IpSet] = field(default_factory=dict)
    tables: Snapshot = field(default_factory=Snapshot)


@dataclass
class Wanted:
    rules: IpvsRuleset
    names: IpvsNames
    ledger: IpSet  # names.owned_virtual_servers with one entry per virtual server
    tables: Snapshot  # rules.tables in the kernel's spelling

    @property
    def sets(self) -> tuple[IpSet, ...]:
        return (*self.rules.ipsets, self.ledger)

    @property
    def chains(self) -> OwnedChains:
        return self.names.owned_chains(self.rules.family)


@dataclass
class Planned:
    ops: list[ops.Op]
    draining: dict[str, float]  # real server -> since when it has been at weight 0
    counts: dict[str, int]

    @property
    def empty(self) -> bool:
        return not self.ops

    def summary(self) -> str:
        c = self.counts
        parts = [
            f"virtual servers +{c['vs_add']} ~{c['vs_edit']} -{c['vs_del']}",
            f"real servers +{c['rs_add']} ~{c['rs_edit']} -{c['rs_del']} (draining {c['draining']})",
            f"addresses +{c['addr_add']} -{c['addr_del']}",
            f"ipset entries +{c['entry_add']} -{c['entry_del']}",
        ]
        if c["companion"]:
            parts.append("companion iptables rules rewritten")
        return ", ".join(parts)


def drain_key(vs: VirtualServer, rs: RealServer) -> str:
    return f"{vs.protocol}/{vs.address}/{vs.port}/{rs.address}/{rs.port}"


def ledger_entry(vs: VirtualServer) -> str:
    return ipset.ip_port(vs.address, vs.protocol, vs.port)


def ledger_key(entry: Entry) -> Key | None:
    """The virtual server a ledger entry records (its `Key`: protocol, address, port)."""
    found = ipset.read_ip_port(entry.element)
    if found is None:
        return None
    address, protocol, port = found
    return (protocol, address, port)


def ledger_set(rules: IpvsRuleset, names: IpvsNames) -> IpSet:
    entries = []
    for vs in rules.virtual_servers:
        owner = rules.owner(vs)
        entries.append(Entry(ledger_entry(vs), f"{owner.service} {owner.kind}"))
    return IpSet(
        names.owned_virtual_servers,
        "hash:ip,port",
        hash_options(rules.family),
        tuple(entries),
        description="virtual servers svc2rules apply created",
    )


def check_conflicts(live: Live, wanted: Wanted) -> None:
    """Refuse, before any write, what the host has and we must not take over."""
    if live.dummy_index is not None and live.dummy_kind != "dummy":
        raise ApplyError(
            f"interface {wanted.rules.dummy_interface} exists and is a {live.dummy_kind or 'non-dummy'} "
            "interface, not ours; rename or remove it"
        )
    for vs in wanted.rules.virtual_servers:
        if vs.key in live.foreign:
            raise ApplyError(
                f"virtual server {vs.protocol} {vs.address}:{vs.port} ({wanted.rules.owner(vs).service}) "
                "already exists and is not ours (another IPVS user, e.g. kube-proxy?); refusing to take it over"
            )
    for wanted_set in wanted.sets:
        have = live.sets.get(wanted_set.name)
        if have is not None and not compatible(have, wanted_set):
            raise ApplyError(
                f"ipset {wanted_set.name} exists as {spelled(have)}, not {spelled(wanted_set)}; "
                "remove it (svc2rules cleanup --backend ipvs)"
            )


def plan(live: Live, wanted: Wanted, draining: dict[str, float], now: float, generation: str) -> Planned:
    check_conflicts(live, wanted)
    counts = dict.fromkeys(
        (
            "vs_add",
            "vs_edit",
            "vs_del",
            "rs_add",
            "rs_edit",
            "rs_del",
            "draining",
            "addr_add",
            "addr_del",
            "entry_add",
            "entry_del",
            "companion",
        ),
        0,
    )
    out: list[ops.Op] = []
    iface = wanted.rules.dummy_interface
    if live.dummy_index is None:
        out.append(ops.LinkAdd(iface))
    elif not live.dummy_up:
        out.append(ops.LinkUp(iface))

    changes = _set_changes(live, wanted)
    if changes.creates:
        out.append(ops.IpsetRestore(tuple(changes.creates), tuple(changes.destroys), ops.PREPARE))
    if changes.adds:
        counts["entry_add"] = len(changes.adds)
        out.append(ops.IpsetRestore(tuple(changes.adds), tuple(changes.add_undo), ops.ADD))
    chains = wanted.chains
    if chains.comparable(wanted.tables) != chains.comparable(live.tables):
        payload, undo = chains.rewrite(chains.snapshot(wanted.rules.tables), live.tables)
        out.append(ops.IptablesRestore(chains, tuple(payload), tuple(undo), "the companion rules", ops.ADD))
        counts["companion"] = 1

    new_draining: dict[str, float] = {}
    removals: list[ops.Op] = []
    for vs in wanted.rules.virtual_servers:
        have = live.services.get(vs.key)
        if have is None:
            out.append(ops.ServiceAdd(vs.without_real_servers()))
            out.extend(ops.DestAdd(vs, rs) for rs in vs.real_servers)
            counts["vs_add"] += 1
            counts["rs_add"] += len(vs.real_servers)
            continue
        if not vs.same_settings(have.server):
            out.append(ops.ServiceEdit(vs.without_real_servers(), have.server.without_real_servers()))
            counts["vs_edit"] += 1
        live_rs = {(rs.address, rs.port): rs for rs in have.server.real_servers}
        for rs in vs.real_servers:
            old = live_rs.get((rs.address, rs.port))
            if old is None:
                out.append(ops.DestAdd(vs, rs))
                counts["rs_add"] += 1
            elif (
                old.weight != rs.weight
                or have.forward_methods.get((rs.address, rs.port), FWD_MASQ) != FWD_MASQ
            ):
                out.append(ops.DestEdit(vs, rs, old.weight))
                counts["rs_edit"] += 1
        wanted_rs = {(rs.address, rs.port) for rs in vs.real_servers}
        for where, old in live_rs.items():
            if where in wanted_rs:
                continue
            key = drain_key(vs, old)
            if have.connections.get(where, 0) == 0:
                removals.append(ops.DestDel(vs, old))
                counts["rs_del"] += 1
            elif old.weight != 0:
                removals.append(ops.DestEdit(vs, old.with_weight(0), old.weight, ops.REMOVE))
                new_draining[key] = now
                counts["rs_edit"] += 1
            else:
                new_draining[key] = draining.get(key, now)
    counts["draining"] = len(new_draining)

    for address in wanted.rules.bind_addresses:
        if address not in live.addresses:
            out.append(ops.AddrAdd(iface, address))
            counts["addr_add"] += 1
    out.extend(removals)
    bound = set(wanted.rules.bind_addresses)
    for address in sorted(live.addresses - bound):
        out.append(ops.AddrDel(iface, address))
        counts["addr_del"] += 1
    wanted_keys = {vs.key for vs in wanted.rules.virtual_servers}
    for vs_key, have in sorted(live.services.items()):
        if vs_key not in wanted_keys:
            out.append(ops.ServiceDel(have.server))
            counts["vs_del"] += 1
    if changes.dels:
        counts["entry_del"] = len(changes.dels)
        out.append(ops.IpsetRestore(tuple(changes.dels), tuple(changes.del_undo), ops.REMOVE))
    if out:
        payload, undo = chains.mark(generation, live.tables)
        out.append(ops.IptablesRestore(chains, tuple(payload), tuple(undo), "the apply marker", ops.FINISH))
    return Planned(ops.in_order(out), new_draining, counts)


@dataclass
class _SetChanges:
    """The ipset batches of an apply, each with its undo."""

    creates: list[ipset.Command] = field(default_factory=list)
    destroys: list[ipset.Command] = field(default_factory=list)
    adds: list[ipset.Command] = field(default_factory=list)
    add_undo: list[ipset.Command] = field(default_factory=list)
    dels: list[ipset.Command] = field(default_factory=list)
    del_undo: list[ipset.Command] = field(default_factory=list)


def _set_changes(live: Live, wanted: Wanted) -> _SetChanges:
    out = _SetChanges()
    for want in wanted.sets:
        have = live.sets.get(want.name)
        if have is None:
            out.creates.append(ipset.Create(want.definition()))
            out.destroys.append(ipset.Destroy(want.name))
        before = {e.element: e for e in (have.entries if have else ())}
        after = {e.element: e for e in want.entries}
        for element, entry in after.items():
            old = before.get(element)
            if old == entry:
                continue
            out.adds.append(ipset.Add(want.name, entry))
            out.add_undo.append(
                ipset.Delete(want.name, element) if old is None else ipset.Add(want.name, old)
            )
        for element, entry in before.items():
            if element not in after:
                out.dels.append(ipset.Delete(want.name, element))
                out.del_undo.append(ipset.Add(want.name, entry))
    return out
