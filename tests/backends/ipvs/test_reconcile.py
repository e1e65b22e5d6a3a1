"""How an apply is planned: only the difference, adds before removes, graceful drains, refusals.

Pure: a host state (`Live`) and a compiled ruleset go in, ordered steps come out. Whether the
kernel then does what the steps say is test_vm.py's business.
"""

from __future__ import annotations

import pytest

from svc2rules.backends.ipvs import ops
from svc2rules.backends.ipvs.kernel import LiveService
from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.backends.ipvs.names import IpvsNames
from svc2rules.backends.ipvs.reconcile import Live, Planned, Wanted, drain_key, ledger_key, ledger_set, plan
from svc2rules.backends.owned_chains import Snapshot
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.syntax import ipset, xtables
from svc2rules.syntax.ipset import IpSet, SetOptions
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer

from .helpers import ruleset, service, slice_

NAMES = IpvsNames("SVC2R")
NOW = 1000.0


def wanted_for(rules: IpvsRuleset) -> Wanted:
    # The companion rules' kernel spelling is taken to be their own spelling here.
    spelled = NAMES.owned_chains(IPFamily.IPv4).snapshot(rules.tables)
    return Wanted(rules, NAMES, ledger_set(rules, NAMES), spelled)


def live_like(wanted: Wanted, *, conns: int = 0) -> Live:
    """A host that has exactly what `wanted` asks for."""
    services = {
        vs.key: LiveService(vs, {(rs.address, rs.port): conns for rs in vs.real_servers})
        for vs in wanted.rules.virtual_servers
    }
    sets = {s.name: s for s in wanted.sets}
    return Live(
        dummy_index=7,
        dummy_up=True,
        dummy_kind="dummy",
        addresses=frozenset(wanted.rules.bind_addresses),
        services=services,
        sets=sets,
        tables=wanted.tables,
    )


def web(*endpoints: str, **spec: object) -> IpvsRuleset:
    return ruleset(
        [
            service("web", "172.30.0.10", **spec),  # type: ignore[arg-type]
            slice_("web", [(ip, "node2") for ip in endpoints]),
        ]
    )


def described(planned: Planned) -> list[str]:
    return [op.describe().splitlines()[0] for op in planned.ops]


def test_an_empty_host_gets_everything_with_addresses_bound_after_their_virtual_servers() -> None:
    wanted = wanted_for(web("10.180.0.1"))
    planned = plan(Live(), wanted, {}, NOW, "g1")
    kinds = [type(op).__name__ for op in planned.ops]
    assert kinds == [
        "LinkAdd",
        "IpsetRestore",  # create the sets
        "IpsetRestore",  # their entries, our record of the virtual server among them
        "IptablesRestore",
        "ServiceAdd",
        "DestAdd",
        "AddrAdd",
        "IptablesRestore",  # the apply marker, last
    ]
    assert "add SVC2R-IPVS-OWNED 172.30.0.10,tcp:80" in planned.ops[2].describe()


def test_the_same_ruleset_again_plans_nothing() -> None:
    wanted = wanted_for(web("10.180.0.1", "10.180.0.2"))
    planned = plan(live_like(wanted), wanted, {}, NOW, "g2")
    assert planned.empty and planned.ops == []


def test_a_new_endpoint_is_one_real_server() -> None:
    live = live_like(wanted_for(web("10.180.0.1")))
    planned = plan(live, wanted_for(web("10.180.0.1", "10.180.0.2")), {}, NOW, "g2")
    assert described(planned)[:1] == ["ipvsadm -a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1"]
    assert [type(op).__name__ for op in planned.ops] == ["DestAdd", "IptablesRestore"]


def test_a_removed_endpoint_without_connections_is_deleted_after_the_additions() -> None:
    live = live_like(wanted_for(web("10.180.0.1")))
    planned = plan(live, wanted_for(web("10.180.0.2")), {}, NOW, "g2")
    assert described(planned) == [
        "ipvsadm -a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1",
        "ipvsadm -d -t 172.30.0.10:80 -r 10.180.0.1:8080",
        "iptables-restore -w 5 --noflush <<EOF   # the apply marker",
    ]
    assert planned.draining == {}


def test_a_removed_endpoint_with_connections_drains_at_weight_0() -> None:
    live = live_like(wanted_for(web("10.180.0.1")), conns=3)
    planned = plan(live, wanted_for(web("10.180.0.2")), {}, NOW, "g2")
    assert described(planned)[:2] == [
        "ipvsadm -a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1",
        "ipvsadm -e -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 0",
    ]
    assert planned.draining == {"tcp/172.30.0.10/80/10.180.0.1/8080": NOW}


def draining_host(conns: int) -> tuple[Live, dict[str, float]]:
    """web's 10.180.0.1 already at weight 0 since t=10, with `conns` connections left."""
    old = wanted_for(web("10.180.0.1", "10.180.0.2"))
    live = live_like(old, conns=conns)
    (vs,) = old.rules.virtual_servers
    drained = VirtualServer(
        vs.protocol,
        vs.address,
        vs.port,
        vs.scheduler,
        real_servers=(RealServer("10.180.0.1", 8080, 0), RealServer("10.180.0.2", 8080, 1)),
    )
    live.services[vs.key] = LiveService(drained, {("10.180.0.1", 8080): conns, ("10.180.0.2", 8080): 0})
    return live, {drain_key(vs, RealServer("10.180.0.1", 8080)): 10.0}


def test_a_draining_real_server_with_connections_left_is_left_alone() -> None:
    live, draining = draining_host(conns=2)
    planned = plan(live, wanted_for(web("10.180.0.2")), draining, NOW, "g3")
    assert planned.empty
    assert planned.draining == draining  # still draining, since t=10


def test_a_drained_real_server_is_deleted() -> None:
    live, draining = draining_host(conns=0)
    planned = plan(live, wanted_for(web("10.180.0.2")), draining, NOW, "g3")
    assert described(planned)[:1] == ["ipvsadm -d -t 172.30.0.10:80 -r 10.180.0.1:8080"]
    assert planned.draining == {}


def test_an_endpoint_that_comes_back_while_draining_returns_to_weight_1() -> None:
    live, draining = draining_host(conns=2)
    planned = plan(live, wanted_for(web("10.180.0.1", "10.180.0.2")), draining, NOW, "g3")
    assert described(planned)[:1] == ["ipvsadm -e -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 1"]
    assert planned.ops[0].phase == ops.ADD


def test_a_scheduler_change_is_an_edit_in_place() -> None:
    live = live_like(wanted_for(web("10.180.0.1")))
    planned = plan(live, wanted_for(web("10.180.0.1", sessionAffinity="ClientIP")), {}, NOW, "g2")
    assert described(planned)[:1] == ["ipvsadm -E -t 172.30.0.10:80 -s rr -p 10800"]
    assert not any(isinstance(op, ops.ServiceDel | ops.ServiceAdd) for op in planned.ops)


def test_a_removed_service_loses_its_address_then_its_virtual_server_then_its_entries() -> None:
    live = live_like(wanted_for(web("10.180.0.1")))
    planned = plan(live, wanted_for(ruleset([])), {}, NOW, "g2")
    names = [type(op).__name__ for op in planned.ops]
    assert names == ["AddrDel", "ServiceDel", "IpsetRestore", "IptablesRestore"]
    removal = planned.ops[2].describe()
    assert "del SVC2R-IPVS-OWNED 172.30.0.10,tcp:80" in removal
    assert "del SVC2R-CLUSTER-IP 172.30.0.10,tcp:80" in removal


def test_a_foreign_virtual_server_in_the_way_stops_the_apply_before_any_write() -> None:
    wanted = wanted_for(web("10.180.0.1"))
    live = Live(foreign=frozenset({("tcp", "172.30.0.10", 80)}))
    with pytest.raises(ApplyError, match="already exists and is not ours"):
        plan(live, wanted, {}, NOW, "g1")


def test_an_interface_of_that_name_that_is_not_a_dummy_is_refused() -> None:
    live = Live(dummy_index=3, dummy_kind="veth")
    with pytest.raises(ApplyError, match="is a veth interface, not ours"):
        plan(live, wanted_for(web()), {}, NOW, "g1")


def test_an_ipset_of_ours_with_another_type_is_refused() -> None:
    wanted = wanted_for(web())
    live = live_like(wanted)
    live.sets["SVC2R-CLUSTER-IP"] = IpSet("SVC2R-CLUSTER-IP", "hash:ip", SetOptions(family=IPFamily.IPv4))
    with pytest.raises(ApplyError, match="ipset SVC2R-CLUSTER-IP exists as hash:ip"):
        plan(live, wanted, {}, NOW, "g1")


def test_drifted_companion_rules_are_rewritten_with_an_undo() -> None:
    wanted = wanted_for(web())
    live = live_like(wanted)
    live.tables = Snapshot({"nat": {}, "filter": {}}, {"nat": [], "filter": []})
    planned = plan(live, wanted, {}, NOW, "g2")
    rewrite = planned.ops[0]
    assert isinstance(rewrite, ops.IptablesRestore)
    nat = next(section for section in rewrite.payload if section.table == "nat")
    assert xtables.DeclareChain("SVC2R-IPVS-SERVICES") in nat.commands
    undo = next(section for section in rewrite.undo if section.table == "nat")
    assert xtables.DeleteChain("SVC2R-IPVS-SERVICES") in undo.commands  # the chain did not exist before


def test_the_ledger_read_back_names_every_virtual_server_it_records() -> None:
    """A NodePort virtual server is not on our dummy interface: only the ledger says it is ours."""
    rules = ruleset(
        [
            service("np", "172.30.0.10", protocol="SCTP", type="NodePort", node_port=30009),
            slice_("np", [("10.180.0.1", "node2")], protocol="SCTP"),
        ]
    )
    read_back = ipset.read_save(ipset.write(ipset.filled(ledger_set(rules, NAMES))))
    recorded = {ledger_key(entry) for entry in read_back[NAMES.owned_virtual_servers].entries}
    assert recorded == {vs.key for vs in rules.virtual_servers}
    assert ("sctp", "192.168.0.2", 30009) in recorded
