"""Self-test of the lab with hand-written iptables rules (not from the compiler).

If these fail, scenario failures mean nothing: the lab itself is wrong.
"""

from __future__ import annotations

import math

import pytest

from .lab import Lab
from .loaders import IptablesLoader, LoadError, NftablesLoader
from .probe import Answered, Dropped, Probe, Proto, Rejected, Sink
from .topology import EXT_CLIENT, NODE_IP, NODE_PODS_IP, POD_CLIENT

pytestmark = [pytest.mark.root, pytest.mark.lab]

IPT = IptablesLoader()
VIP = "172.30.0.1"
EP1, EP2 = "10.180.0.1", "10.180.0.2"


def dnat_rules(vip: str, port: int, targets: list[str], *, masquerade: bool = False) -> str:
    """nat rules sending vip:port (tcp and udp) to targets with kube-proxy's statistic pattern."""
    lines = ["*nat", ":LABT - [0:0]"]
    for proto in ("tcp", "udp"):
        lines.append(f"-A PREROUTING -d {vip}/32 -p {proto} --dport {port} -j LABT")
        lines.append(f"-A OUTPUT -d {vip}/32 -p {proto} --dport {port} -j LABT")
    for i, target in enumerate(targets):
        remaining = len(targets) - i
        stat = f"-m statistic --mode random --probability {1 / remaining:.10f} " if remaining > 1 else ""
        for proto in ("tcp", "udp"):
            lines.append(f"-A LABT -p {proto} {stat}-j DNAT --to-destination {target}")
    if masquerade:
        lines.append("-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def filter_rules(vip: str, target: str) -> str:
    return f"*filter\n-A FORWARD -d {vip}/32 -j {target}\n-A OUTPUT -d {vip}/32 -j {target}\nCOMMIT\n"


def test_dnat_answers_from_ext_pod_and_node(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    lab.load(IPT, dnat_rules(VIP, 80, [f"{EP1}:8080"]))
    probes = [Probe(o, VIP, 80, proto, count=5) for o in ("ext", "pod", "node") for proto in ("tcp", "udp")]
    results = lab.probe_many(probes)
    expected_source = {"ext": EXT_CLIENT, "pod": POD_CLIENT, "node": NODE_IP}
    for r in results:
        assert r.outcomes == [Answered(f"{EP1}:8080", expected_source[r.probe.origin])] * 5, r.summary()


def test_no_rule_reaches_the_sink_or_the_node(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    for proto in ("tcp", "udp"):
        for origin in ("ext", "pod", "node"):
            for dst in (VIP, "192.168.99.7", "1.2.3.4", "5.6.7.8"):
                r = lab.probe(origin, dst, 80, proto)
                assert r.outcomes == [Sink(host="sink")], r.summary()
                assert isinstance(r.outcomes[0], Sink) and r.outcomes[0].seen_dst == f"{dst}:80"
            # A node address that nothing rewrote is answered by the node itself, not the sink.
            r = lab.probe(origin, NODE_IP, 30080, proto)
            assert r.outcomes == [Sink(host="node")], r.summary()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_reject_is_rejected_not_dropped(lab: Lab, proto: Proto) -> None:
    lab.load(IPT, filter_rules(VIP, "REJECT"))
    # Many at once: with the default icmp_ratelimit most of these would time out instead.
    for r in lab.probe_many([Probe(o, VIP, 80, proto, count=50) for o in ("ext", "pod", "node")]):
        assert r.all(Rejected), r.summary()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_drop_is_dropped(lab: Lab, proto: Proto) -> None:
    lab.load(IPT, filter_rules(VIP, "DROP"))
    ext, pod, node = lab.probe_many(
        [Probe(o, VIP, 80, proto, count=3, expect_drop=True) for o in ("ext", "pod", "node")]
    )
    assert ext.all(Dropped), ext.summary()
    assert pod.all(Dropped), pod.summary()
    if proto == "tcp":
        assert node.all(Dropped), node.summary()
    else:
        # Kernel fact: netfilter dropping a locally generated datagram fails send() with EPERM.
        assert node.outcomes == [Rejected("EPERM")] * 3, node.summary()
        assert all(isinstance(o, Rejected) and o.reason == "EPERM" for o in node.outcomes)


def test_masquerade_shows_a_node_address(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    lab.load(IPT, dnat_rules(VIP, 80, [f"{EP1}:8080"], masquerade=True))
    for r in lab.probe_many([Probe(o, VIP, 80, p, count=3) for o in ("ext", "pod") for p in ("tcp", "udp")]):
        assert r.masqueraded, r.summary()
        assert r.saw_sources == {NODE_PODS_IP}, r.summary()
        assert not r.saw_client


def test_without_masquerade_the_client_address_is_seen(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    lab.load(IPT, dnat_rules(VIP, 80, [f"{EP1}:8080"]))
    srcs = ("203.0.113.1", "203.0.113.2", "203.0.113.200")
    r = lab.probe("ext", VIP, 80, src=srcs, count=6)
    assert r.saw_client and not r.masqueraded, r.summary()
    assert r.saw_sources == set(srcs)


def test_statistic_pair_hits_both_endpoints(lab: Lab) -> None:
    lab.add_pods([EP1, EP2], [8080])
    lab.load(IPT, dnat_rules(VIP, 80, [f"{EP1}:8080", f"{EP2}:8080"]))
    n = 400
    for r in lab.probe_many([Probe("ext", VIP, 80, "tcp", count=n), Probe("pod", VIP, 80, "udp", count=n)]):
        assert r.all(Answered), r.summary()
        assert r.endpoint_set == {f"{EP1}:8080", f"{EP2}:8080"}, r.summary()
        # 5 sigma of a fair coin: a broken probability (e.g. 1.0 or 0.1) fails, chance does not.
        assert abs(r.endpoints[f"{EP1}:8080"] - n / 2) < 5 * math.sqrt(n) / 2, r.summary()


def test_hairpin_goes_through_the_node(lab: Lab) -> None:
    """A pod reaching itself via a VIP: the reply must be un-NATed by the node, not short-cut."""
    lab.add_pods([EP1, EP2], [8080])
    lab.load(IPT, dnat_rules(VIP, 80, [f"{EP1}:8080"]))
    self_hit = lab.probe("pod", VIP, 80, src=EP1, count=3)
    other = lab.probe("pod", VIP, 80, "udp", src=EP2, count=3)
    assert self_hit.outcomes == [Answered(f"{EP1}:8080", EP1)] * 3, self_hit.summary()
    assert other.outcomes == [Answered(f"{EP1}:8080", EP2)] * 3, other.summary()


def test_localhost_dnat_needs_route_localnet_and_masquerade(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    lab.load(
        IPT,
        "*nat\n"
        "-A OUTPUT -d 127.0.0.1/32 -p tcp --dport 30080 -j DNAT --to-destination 10.180.0.1:8080\n"
        "-A POSTROUTING -s 127.0.0.0/8 -m conntrack --ctstate DNAT -j MASQUERADE\n"
        "COMMIT\n",
    )
    r = lab.probe("node", "127.0.0.1", 30080, src="127.0.0.1", count=3)
    assert r.all(Answered) and r.masqueraded, r.summary()


def test_unknown_pod_ip_is_dropped(lab: Lab) -> None:
    lab.load(IPT, dnat_rules(VIP, 80, ["10.180.9.9:8080"]))
    assert lab.probe("ext", VIP, 80, expect_drop=True).all(Dropped)


def test_bad_source_address_is_a_test_error(lab: Lab) -> None:
    with pytest.raises(ValueError, match="not a client address"):
        lab.probe("ext", VIP, 80, src="10.1.1.1")


def test_loader_error_carries_tool_stderr(lab: Lab) -> None:
    with pytest.raises(LoadError, match=r"iptables-restore"):
        lab.load(IPT, "*nat\n-A NOSUCHCHAIN -j ACCEPT\nCOMMIT\n")


NFT_DNAT = """
table ip labt {
    chain lab_pre { type nat hook prerouting priority dstnat; ip daddr 172.30.0.1 tcp dport 80 dnat to 10.180.0.1:8080; }
    chain lab_out { type nat hook output priority -100; ip daddr 172.30.0.1 tcp dport 80 dnat to 10.180.0.1:8080; }
    chain lab_fwd { type filter hook forward priority 0; ip daddr 172.30.0.2 reject; }
}
"""


def test_nftables_loader(lab: Lab) -> None:
    lab.add_pods([EP1], [8080])
    lab.load(NftablesLoader(), NFT_DNAT)
    results = lab.probe_many([Probe(o, VIP, 80, count=3) for o in ("ext", "pod", "node")])
    for r in results:
        assert r.all(Answered) and r.endpoint_set == {f"{EP1}:8080"}, r.summary()
    assert lab.probe("ext", "172.30.0.2", 80).all(Rejected)
    with pytest.raises(LoadError, match="nft"):
        lab.load(NftablesLoader(), "table ip x { chain y { nonsense; } }")
