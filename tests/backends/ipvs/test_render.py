"""What `compile --backend ipvs` emits: kube-proxy's IPVS mode, decision by decision."""

from __future__ import annotations

import pytest

from svc2rules.api import render
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.backends.ipvs.names import DUMMY_INTERFACE, IPSET_NAME_MAX, IPTABLES_CHAIN_MAX, IpvsNames
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError
from svc2rules.syntax import ipvsadm
from tests.options import render_options

from .helpers import CONFIG, chains, entries, plan_of, real, ruleset, section, servers, service, slice_, text

WEB = [
    service("web", "172.30.0.10"),
    slice_("web", [("10.180.0.2", "node2"), ("10.180.0.1", "node1")]),
]


def test_a_clusterip_is_a_bound_virtual_server_with_masqueraded_weight_1_real_servers() -> None:
    rules = ruleset(WEB)
    (vs,) = rules.virtual_servers
    assert ipvsadm.add_service(vs) == "-A -t 172.30.0.10:80 -s rr"
    assert [ipvsadm.add_real_server(vs, rs) for rs in vs.real_servers] == [
        "-a -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 1",
        "-a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1",
    ]
    assert rules.bind_addresses == ("172.30.0.10",)
    assert entries(rules, "CLUSTER-IP") == ["172.30.0.10,tcp:80"]
    assert entries(rules, "IPVS-IPS") == ["172.30.0.10"]


def test_client_ip_affinity_is_persistence_with_its_timeout() -> None:
    objs = [
        service(
            "web",
            "172.30.0.10",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
        ),
        WEB[1],
    ]
    assert ipvsadm.add_service(servers(objs)["tcp 172.30.0.10:80"]) == "-A -t 172.30.0.10:80 -s rr -p 600"
    objs[0]["spec"].pop("sessionAffinityConfig")
    assert servers(objs)["tcp 172.30.0.10:80"].persistence == 10800  # the API's default


def test_scheduler_flag_beats_the_config_file_and_the_annotation_beats_both() -> None:
    pinned = service("pinned", "172.30.0.11", annotations={"svc2rules.io/ipvs-scheduler": "dh"})
    config = CONFIG.model_copy(update={"ipvs_scheduler": "lc"})
    objs = [*WEB, pinned]
    assert servers(objs)["tcp 172.30.0.10:80"].scheduler == "rr"
    assert servers(objs, config)["tcp 172.30.0.10:80"].scheduler == "lc"
    assert servers(objs, config, extra={"ipvs_scheduler": "sed"})["tcp 172.30.0.10:80"].scheduler == "sed"
    assert servers(objs, config, extra={"ipvs_scheduler": "sed"})["tcp 172.30.0.11:80"].scheduler == "dh"


def test_mh_gets_the_source_port_hashing_flag_kube_proxy_sets() -> None:
    vs = servers(WEB, extra={"ipvs_scheduler": "mh"})["tcp 172.30.0.10:80"]
    assert ipvsadm.add_service(vs) == "-A -t 172.30.0.10:80 -s mh -b mh-port"
    assert servers(WEB, extra={"ipvs_scheduler": "sh"})["tcp 172.30.0.10:80"].sched_flags == ()


@pytest.mark.parametrize("where", ["config", "flag"])
def test_an_unknown_scheduler_is_a_usage_error(where: str) -> None:
    if where == "config":
        with pytest.raises(UsageError, match=r"ipvs\.scheduler: unknown IPVS scheduler 'fifo'"):
            ruleset(WEB, CONFIG.model_copy(update={"ipvs_scheduler": "fifo"}))
    else:
        with pytest.raises(UsageError, match="--ipvs-scheduler: unknown IPVS scheduler 'fifo'"):
            ruleset(WEB, extra={"ipvs_scheduler": "fifo"})


def test_protocols_are_spelled_as_ipvsadm_save_spells_them() -> None:
    objs = [
        service("u", "172.30.0.1", port=53, target=53, protocol="UDP"),
        service("s", "172.30.0.2", port=9, target=9, protocol="SCTP"),
    ]
    lines = sorted(ipvsadm.add_service(vs) for vs in ruleset(objs).virtual_servers)
    assert lines == ["-A --sctp-service 172.30.0.2:9 -s rr", "-A -u 172.30.0.1:53 -s rr"]


def test_nodeport_virtual_servers_on_every_node_ip_never_bound() -> None:
    config = CONFIG.model_copy(update={"node_ips": ("192.168.0.3", "192.168.0.2")})
    objs = [service("np", "172.30.0.10", type="NodePort", node_port=30080), WEB[1] | {}]
    objs[1] = slice_("np", [("10.180.0.1", "node1")])
    rules = ruleset(objs, config)
    assert sorted(f"{vs.address}:{vs.port}" for vs in rules.virtual_servers) == [
        "172.30.0.10:80",
        "192.168.0.2:30080",
        "192.168.0.3:30080",
    ]
    assert rules.bind_addresses == ("172.30.0.10",)
    assert entries(rules, "NODE-PORT-TCP") == ["30080"]
    assert entries(rules, "NODE-PORT-LOCAL-TCP") == []


def test_node_port_addresses_pick_the_node_ips_and_never_loopback() -> None:
    config = CONFIG.model_copy(
        update={
            "node_ips": ("192.168.0.2", "10.99.0.2"),
            "node_port_addresses": ("10.99.0.0/16", "127.0.0.0/8"),
        }
    )
    objs = [service("np", "172.30.0.10", type="NodePort", node_port=30080)]
    assert sorted(servers(objs, config)) == ["tcp 10.99.0.2:30080", "tcp 172.30.0.10:80"]


def test_nodeports_without_a_node_ip_are_left_out_with_a_warning() -> None:
    rules = ruleset([service("np", "172.30.0.10", type="NodePort", node_port=30080)], ProxyConfig())
    assert [vs.port for vs in rules.virtual_servers] == [80]
    assert any("need a node IP" in w for w in rules.warnings)


def test_sctp_nodeports_are_node_ip_and_port_entries() -> None:
    objs = [service("s", "172.30.0.2", port=9, target=9, protocol="SCTP", type="NodePort", node_port=30009)]
    assert entries(ruleset(objs), "NODE-PORT-SCTP") == ["192.168.0.2,sctp:30009"]


def test_external_ips_and_load_balancer_ips_are_bound_unless_they_are_node_ips() -> None:
    objs = [
        service(
            "lb",
            "172.30.0.10",
            type="LoadBalancer",
            externalIPs=["192.168.99.1", "192.168.0.2"],
            status_ips=("1.2.3.4",),
            node_port=30080,
        )
    ]
    rules = ruleset(objs)
    assert rules.bind_addresses == ("172.30.0.10", "192.168.99.1", "1.2.3.4")
    assert sorted(entries(rules, "EXTERNAL-IP")) == ["192.168.0.2,tcp:80", "192.168.99.1,tcp:80"]
    assert entries(rules, "LOAD-BALANCER") == ["1.2.3.4,tcp:80"]
    assert "tcp 192.168.0.2:80" in servers(objs)


def test_external_traffic_policy_local_gives_external_virtual_servers_the_local_endpoints() -> None:
    objs = [
        service(
            "lb",
            "172.30.0.10",
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            node_port=30080,
            status_ips=("1.2.3.4",),
        ),
        slice_("lb", [("10.180.0.1", "node1"), ("10.180.0.2", "node2")]),
    ]
    got = servers(objs)
    assert real(got["tcp 172.30.0.10:80"]) == ["10.180.0.1:8080 w1", "10.180.0.2:8080 w1"]
    assert real(got["tcp 1.2.3.4:80"]) == ["10.180.0.1:8080 w1"]
    assert real(got["tcp 192.168.0.2:30080"]) == ["10.180.0.1:8080 w1"]
    rules = ruleset(objs)
    assert entries(rules, "LOAD-BALANCER-LOCAL") == ["1.2.3.4,tcp:80"]
    assert entries(rules, "NODE-PORT-LOCAL-TCP") == ["30080"]


def test_without_local_endpoints_ipvs_mode_uses_the_cluster_ones_instead_of_dropping() -> None:
    objs = [
        service("np", "172.30.0.10", type="NodePort", externalTrafficPolicy="Local", node_port=30080),
        slice_("np", [("10.180.0.2", "node2")]),
    ]
    assert real(servers(objs)["tcp 192.168.0.2:30080"]) == ["10.180.0.2:8080 w1"]


def test_internal_traffic_policy_local() -> None:
    local_only = [
        service("web", "172.30.0.10", internalTrafficPolicy="Local"),
        slice_("web", [("10.180.0.1", "node1"), ("10.180.0.2", "node2")]),
    ]
    assert real(servers(local_only)["tcp 172.30.0.10:80"]) == ["10.180.0.1:8080 w1"]
    remote_only = [local_only[0], slice_("web", [("10.180.0.2", "node2")])]
    # Not externally accessible: kube-proxy computes no Cluster endpoints, so none at all.
    assert real(servers(remote_only)["tcp 172.30.0.10:80"]) == []


def test_terminating_endpoints_serve_when_no_endpoint_is_ready() -> None:
    objs = [
        service("web", "172.30.0.10"),
        slice_("web", [("10.180.0.1", "node1")], ready=False, serving=True, terminating=True),
    ]
    assert real(servers(objs)["tcp 172.30.0.10:80"]) == ["10.180.0.1:8080 w1"]


def test_a_service_without_endpoints_has_a_virtual_server_without_real_servers() -> None:
    assert real(servers([service("web", "172.30.0.10")])["tcp 172.30.0.10:80"]) == []


def test_hairpin_entries_are_the_local_real_servers() -> None:
    assert entries(ruleset(WEB), "LOOP-BACK") == ["10.180.0.1,tcp:8080,10.180.0.1"]


def test_load_balancer_source_ranges_fill_the_firewall_sets() -> None:
    lb = service(
        "lb",
        "172.30.0.10",
        type="LoadBalancer",
        status_ips=("1.2.3.4",),
        loadBalancerSourceRanges=["203.0.113.0/25", "10.0.0.1/32"],
        node_port=30080,
    )
    rules = ruleset([lb])
    assert entries(rules, "LOAD-BALANCER-FW") == ["1.2.3.4,tcp:80"]
    assert sorted(entries(rules, "LB-SOURCE-CIDR")) == [
        "1.2.3.4,tcp:80,10.0.0.1",
        "1.2.3.4,tcp:80,203.0.113.0/25",
    ]
    # The node's IP is in no range: the node may not reach the VIP (it would come from the VIP).
    assert entries(rules, "LB-SOURCE-IP") == []
    out = chains(rules, "filter")["SVC2R-IPVS-OUT-FILTER"]
    assert out == [
        '-m comment --comment "ns1/lb:p loadbalancer IP, source ranges exclude the node" '
        "-s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP"
    ]
    lb["spec"]["loadBalancerSourceRanges"] = ["192.168.0.0/24"]
    rules = ruleset([lb])
    assert entries(rules, "LB-SOURCE-IP") == ["1.2.3.4,tcp:80,1.2.3.4"]
    assert chains(rules, "filter")["SVC2R-IPVS-OUT-FILTER"] == []


@pytest.mark.parametrize(
    ("config", "rule"),
    [
        (CONFIG, "-m set --match-set SVC2R-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j SVC2R-IPVS-MARK-MASQ"),
        (
            CONFIG.model_copy(update={"masquerade_all": True}),
            "-m set --match-set SVC2R-CLUSTER-IP dst,dst -j SVC2R-IPVS-MARK-MASQ",
        ),
        (
            CONFIG.model_copy(update={"cluster_cidrs": ()}),
            "-m set --match-set SVC2R-CLUSTER-IP src,dst -j SVC2R-IPVS-MARK-MASQ",
        ),
    ],
    ids=["off-cluster", "masquerade-all", "no-cluster-cidr"],
)
def test_clusterip_masquerade_rule(config: ProxyConfig, rule: str) -> None:
    rules = ruleset(WEB, config, comments="never")
    assert rule in chains(rules, "nat")["SVC2R-IPVS-SERVICES"]


def test_the_companion_rules_do_not_depend_on_the_services() -> None:
    """A Service change is an ipset/IPVS change, never an iptables one (see companion.py)."""
    assert ruleset(WEB).tables == ruleset([]).tables


def test_the_masquerade_mark_follows_the_config() -> None:
    rules = ruleset(WEB, CONFIG.model_copy(update={"masquerade_bit": 15}))
    assert "-j MARK --or-mark 0x8000" in chains(rules, "nat")["SVC2R-IPVS-MARK-MASQ"]


def test_names_fit_the_kernel_limits_and_never_collide_with_the_iptables_backend() -> None:
    for prefix in ("SVC2R", "ABCDEFG"):
        rules = ruleset(WEB, chain_prefix=prefix)
        assert all(len(s.name) <= IPSET_NAME_MAX for s in rules.ipsets)
        assert len(IpvsNames(prefix).owned_virtual_servers) <= IPSET_NAME_MAX
        ours = {c for table in rules.tables for c in table.chains} | {IpvsNames(prefix).applied}
        assert all(len(c) <= IPTABLES_CHAIN_MAX for c in ours)
        iptables = ChainNames(prefix)
        theirs = {v for v in vars(iptables).values() if isinstance(v, str) and v != prefix}
        assert not ours & theirs
        assert all(c.startswith(f"{prefix}-IPVS-") for c in ours)
    assert len(DUMMY_INTERFACE) <= 15


def test_one_text_with_four_delimited_sections() -> None:
    compiled = text(WEB)
    assert [line.split()[2] for line in compiled.splitlines() if line.startswith("#### section ")] == [
        "dummy:",
        "ipset:",
        "iptables:",
        "ipvsadm:",
    ]
    assert section(compiled, "dummy").splitlines() == [
        f"link add {DUMMY_INTERFACE} type dummy",
        f"link set {DUMMY_INTERFACE} up",
        f"address add 172.30.0.10/32 dev {DUMMY_INTERFACE}",
    ]
    assert section(compiled, "ipvsadm").splitlines() == [
        "-A -t 172.30.0.10:80 -s rr",
        "-a -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 1",
        "-a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1",
    ]
    assert section(compiled, "iptables").startswith("*nat\n")


def test_ipset_entries_name_their_service_unless_comments_are_off() -> None:
    assert 'add SVC2R-CLUSTER-IP 172.30.0.10,tcp:80 comment "ns1/web:p"' in text(WEB)
    quiet = text(WEB, comments="never")
    assert "add SVC2R-CLUSTER-IP 172.30.0.10,tcp:80\n" in quiet
    assert not [line for line in quiet.splitlines() if line.startswith("# ") and "Kubernetes" in line]


def test_a_virtual_server_claimed_twice_keeps_the_first_and_warns() -> None:
    objs = [
        service("a", "172.30.0.10", externalIPs=["192.168.99.1"]),
        service("b", "172.30.0.11", externalIPs=["192.168.99.1"]),
    ]
    rules = ruleset(objs)
    assert [rules.owner(vs).service for vs in rules.virtual_servers if vs.address == "192.168.99.1"] == [
        "ns1/a:p"
    ]
    assert any("also a virtual server of ns1/a:p" in w for w in rules.warnings)


def test_ipv6_service_ports_are_left_out_with_a_warning() -> None:
    objs = [service("v6", "fd00::10", ipFamilies=["IPv6"], clusterIPs=["fd00::10"])]
    assert ruleset(objs).virtual_servers == ()
    artifact = render(plan_of(objs), "ipvs", render_options("ipvs"))
    assert artifact.warnings == ("1 IPv6 service port(s) not rendered: the ipvs backend is IPv4 only",)
