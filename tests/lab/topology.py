"""The lab's address plan and the four throw-away namespaces that realise it.

::

    ext ──────────── node ──────────── pods
     192.168.0.1/24   192.168.0.2/24    10.180.255.253 + pod IPs (/32 each)
     203.0.113.x/32   10.180.255.254 ───┘
                      198.51.100.1/30 ── sink 198.51.100.2 (answers any address)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from . import netns

# Address plan (see docs/lab.md). Traffic never leaves the namespaces the lab creates.
NODE_IP = "192.168.0.2"
EXT_LINK_IP = "192.168.0.1"
NODE_PODS_IP = "10.180.255.254"  # the node's address towards pods (its "cni0"); masquerade source
PODS_LINK_IP = "10.180.255.253"  # the pods side of that link: the node's next hop for the cluster CIDR
NODE_SINK_IP = "198.51.100.1"
SINK_IP = "198.51.100.2"
LOCALHOST = "127.0.0.1"
CLUSTER_CIDR = "10.0.0.0/8"
POD_CIDR = "10.180.0.0/16"
CLUSTER_IP_RANGE = "172.30.0.0/16"
EXTERNAL_IP_RANGE = "192.168.99.0/24"
LB_IPS = ("1.2.3.4", "5.6.7.8")
LB_SOURCE_RANGE = "203.0.113.0/25"
EXT_CLIENT_NET = "203.0.113.0/24"

#: External client inside ``loadBalancerSourceRanges`` 203.0.113.0/25, and more like it.
EXT_CLIENT = "203.0.113.1"
EXT_CLIENTS_IN_RANGE = tuple(f"203.0.113.{i}" for i in range(1, 17))
#: External client outside the source range.
EXT_CLIENT_DENIED = "203.0.113.200"
EXT_CLIENTS_OUT_OF_RANGE = tuple(f"203.0.113.{i}" for i in range(200, 208))
EXT_CLIENTS = (EXT_LINK_IP, *EXT_CLIENTS_IN_RANGE, *EXT_CLIENTS_OUT_OF_RANGE)
#: Pod clients (sources in the cluster CIDR) that are not endpoints unless a test makes them one.
POD_CLIENT = "10.180.0.200"
POD_CLIENTS = tuple(f"10.180.0.{i}" for i in range(200, 216))

#: Every address a packet can carry after the node masqueraded it.
NODE_ADDRESSES = frozenset({NODE_IP, NODE_PODS_IP, NODE_SINK_IP, LOCALHOST})

# Routes on the node that steer service VIPs to the sink, so un-rewritten traffic is observable and a
# node-local connect() to a VIP finds a route (without one it fails with ENETUNREACH before nat
# OUTPUT ever sees the packet).
SERVICE_ROUTES = (CLUSTER_IP_RANGE, EXTERNAL_IP_RANGE, *(f"{ip}/32" for ip in LB_IPS))

# Each veth pair is its own L2 segment, so fixed MACs are safe and let us pin every neighbour
# permanently: with hundreds of concurrent first packets, ARP resolution would overflow the
# unresolved-neighbour queue and turn answers into spurious timeouts.
_MAC = {
    "ext": "02:53:32:00:00:01",
    "node_ext": "02:53:32:00:00:02",
    "node_pods": "02:53:32:00:01:01",
    "pods": "02:53:32:00:01:02",
    "node_sink": "02:53:32:00:02:01",
    "sink": "02:53:32:00:02:02",
}
_POD_ROUTE_TABLE = 100
_SINK_ANYIP_TABLE = 100
ROLES = ("ext", "node", "pods", "sink")


def is_pod_ip(ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(CLUSTER_CIDR)


@dataclass
class Topology:
    """Names of the namespaces and interfaces of one test. Build with :meth:`build`."""

    test_id: str
    ns: dict[str, str] = field(default_factory=dict)
    ifname: dict[str, str] = field(default_factory=dict)
    workers: dict[str, netns.NetnsWorker] = field(default_factory=dict)
    pod_ips: set[str] = field(default_factory=set)

    @property
    def node(self) -> str:
        return self.ns["node"]

    @classmethod
    def build(cls) -> Topology:
        test_id = netns.new_test_id()
        topo = cls(test_id=test_id)
        topo.ns = {role: netns.netns_name(test_id, role) for role in ROLES}
        # Interface names are per-namespace, but keep them unique per test anyway so that a leaked
        # or moved interface can always be traced back to its test. 3+6+2 <= 15 chars (IFNAMSIZ).
        suffix = {
            "ext": "xn",
            "node_ext": "nx",
            "node_pods": "np",
            "pods": "pn",
            "node_sink": "ns",
            "sink": "sn",
        }
        topo.ifname = {k: f"s2r{test_id}{v}" for k, v in suffix.items()}
        netns.register(topo.ns.values())
        try:
            topo._create()
        except BaseException:
            topo.destroy()
            raise
        return topo

    def _create(self) -> None:
        ns, ifn = self.ns, self.ifname

        def veth(a: str, a_ns: str, b: str, b_ns: str) -> str:
            # Both ends are born inside their namespaces: nothing ever appears in the host namespace.
            return (
                f"link add name {ifn[a]} address {_MAC[a]} netns {ns[a_ns]} type veth "
                f"peer name {ifn[b]} address {_MAC[b]} netns {ns[b_ns]}"
            )

        netns.ip_batch(
            [
                *(f"netns add {name}" for name in ns.values()),
                veth("node_ext", "node", "ext", "ext"),
                veth("node_pods", "node", "pods", "pods"),
                veth("node_sink", "node", "sink", "sink"),
            ]
        )
        self.workers = {role: netns.NetnsWorker(name) for role, name in ns.items()}
        self._sysctls()

        x, nx, npd, pn = ifn["ext"], ifn["node_ext"], ifn["node_pods"], ifn["pods"]
        nsk, sn = ifn["node_sink"], ifn["sink"]
        netns.ip_batch(
            [
                "link set lo up",
                f"link set {x} up",
                f"addr add {EXT_LINK_IP}/24 dev {x}",
                *(f"addr add {ip}/32 dev {x}" for ip in EXT_CLIENTS if ip != EXT_LINK_IP),
                f"neigh replace {NODE_IP} lladdr {_MAC['node_ext']} dev {x} nud permanent",
                f"route add default via {NODE_IP} dev {x}",
            ],
            ns["ext"],
        )
        netns.ip_batch(
            [
                "link set lo up",
                *(f"link set {i} up" for i in (nx, npd, nsk)),
                f"addr add {NODE_IP}/24 dev {nx}",
                f"addr add {NODE_PODS_IP}/32 dev {npd}",
                f"addr add {NODE_SINK_IP}/30 dev {nsk}",
                f"neigh replace {EXT_LINK_IP} lladdr {_MAC['ext']} dev {nx} nud permanent",
                f"neigh replace {PODS_LINK_IP} lladdr {_MAC['pods']} dev {npd} nud permanent",
                f"neigh replace {SINK_IP} lladdr {_MAC['sink']} dev {nsk} nud permanent",
                f"route add {EXT_CLIENT_NET} via {EXT_LINK_IP} dev {nx}",
                f"route add {CLUSTER_CIDR} via {PODS_LINK_IP} dev {npd} onlink",
                # src hint: node-originated traffic to a VIP leaves from the node IP, as on a real node.
                *(f"route add {r} via {SINK_IP} dev {nsk} src {NODE_IP}" for r in SERVICE_ROUTES),
                f"route add default via {SINK_IP} dev {nsk} src {NODE_IP}",
            ],
            ns["node"],
        )
        netns.ip_batch(
            [
                "link set lo up",
                f"link set {pn} up",
                f"addr add {PODS_LINK_IP}/32 dev {pn}",
                *(f"addr add {ip}/32 dev {pn}" for ip in POD_CLIENTS),
                f"neigh replace {NODE_PODS_IP} lladdr {_MAC['node_pods']} dev {pn} nud permanent",
                f"route add default via {NODE_PODS_IP} dev {pn} onlink",
                # All pods share this namespace; without this a pod talking to another pod (or to
                # itself, hairpin) would be delivered locally and replies would bypass the node's
                # NAT. Locally generated traffic from a pod IP therefore consults a table that only
                # knows "via the node", ahead of the local table.
                f"route add default via {NODE_PODS_IP} dev {pn} onlink table {_POD_ROUTE_TABLE}",
                "rule add pref 1000 lookup local",
                "rule del pref 0 lookup local",
                f"rule add pref 100 iif lo from {CLUSTER_CIDR} lookup {_POD_ROUTE_TABLE}",
            ],
            ns["pods"],
        )
        netns.ip_batch(
            [
                "link set lo up",
                f"link set {sn} up",
                f"addr add {SINK_IP}/30 dev {sn}",
                f"neigh replace {NODE_SINK_IP} lladdr {_MAC['node_sink']} dev {sn} nud permanent",
                f"route add default via {NODE_SINK_IP} dev {sn}",
                # AnyIP only for packets arriving from the node: every destination is local, yet
                # replies (iif lo) still route back to the node.
                f"route add local 0.0.0.0/0 dev lo table {_SINK_ANYIP_TABLE}",
                f"rule add pref 100 iif {sn} lookup {_SINK_ANYIP_TABLE}",
            ],
            ns["sink"],
        )

    def _sysctls(self) -> None:
        """Set every sysctl we rely on: new namespaces may copy the host's conf/all and conf/default."""
        ifaces = {
            "ext": [self.ifname["ext"]],
            "node": [self.ifname["node_ext"], self.ifname["node_pods"], self.ifname["node_sink"]],
            "pods": [self.ifname["pods"]],
            "sink": [self.ifname["sink"]],
        }
        for role, worker in self.workers.items():
            confs = ["all", "default", "lo", *ifaces[role]]
            values: dict[str, str] = {
                # Unlimited ICMP, or most REJECTs look like DROPs as soon as probes run concurrently.
                "net.ipv4.icmp_ratelimit": "0",
                "net.ipv4.icmp_msgs_per_sec": "1000000",
                "net.ipv4.icmp_msgs_burst": "1000000",
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
                "net.ipv4.ip_forward": "1" if role == "node" else "0",
            }
            for c in confs:
                values[f"net.ipv4.conf.{c}.rp_filter"] = "0"
                # Pod-to-pod via the node leaves and re-enters the same link: no redirects either way.
                values[f"net.ipv4.conf.{c}.send_redirects"] = "0"
                values[f"net.ipv4.conf.{c}.accept_redirects"] = "0"
                values[f"net.ipv4.conf.{c}.arp_ignore"] = "0"
                values[f"net.ipv4.conf.{c}.arp_announce"] = "0"
            if role == "node":
                # localhost NodePorts: DNAT of 127.0.0.1 to a pod needs route_localnet.
                values["net.ipv4.conf.all.route_localnet"] = "1"
                values["net.ipv4.conf.default.route_localnet"] = "1"
            if role == "pods":
                # Hairpin without masquerade arrives with a source that is one of our own addresses.
                values["net.ipv4.conf.all.accept_local"] = "1"
                values[f"net.ipv4.conf.{self.ifname['pods']}.accept_local"] = "1"
            worker.write_sysctls(values, optional=("net.ipv4.icmp_msgs_per_sec", "net.ipv4.icmp_msgs_burst"))

    def add_pod_ips(self, ips: list[str]) -> None:
        new = [ip for ip in ips if ip not in self.pod_ips and ip not in POD_CLIENTS]
        for ip in new:
            if not is_pod_ip(ip):
                raise ValueError(f"pod IP {ip} is outside the cluster CIDR {CLUSTER_CIDR}")
        netns.ip_batch([f"addr replace {ip}/32 dev {self.ifname['pods']}" for ip in new], self.ns["pods"])
        self.pod_ips.update(new)

    def destroy(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers = {}
        netns.delete_netns(self.ns.values())
