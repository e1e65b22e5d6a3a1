"""Node and proxy settings: flags, kube-proxy configuration files, derived values."""

from __future__ import annotations

import pytest

from svc2rules.config import ProxyConfig, build_config
from svc2rules.errors import UsageError

KP = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}


def test_masquerade_mark_is_printed_like_kube_proxy() -> None:
    assert ProxyConfig().masquerade_mark == "0x4000"
    assert ProxyConfig(masquerade_bit=15).masquerade_mark == "0x8000"


def test_cluster_cidr_is_per_family() -> None:
    config = ProxyConfig(cluster_cidrs=("10.0.0.0/8", "fd00::/48"))
    assert config.cluster_cidr("IPv4") == "10.0.0.0/8"
    assert config.cluster_cidr("IPv6") == "fd00::/48"


def test_node_port_addresses_select_node_ips() -> None:
    config = ProxyConfig(
        node_ips=("192.168.0.2", "10.9.0.2"), node_port_addresses=("192.168.0.0/16", "127.0.0.0/8")
    )
    assert config.node_port_ips("IPv4") == ("127.0.0.1", "192.168.0.2")
    assert ProxyConfig(node_ips=("192.168.0.2",)).node_port_ips("IPv4") is None
    assert ProxyConfig(node_ips=("10.9.0.2", "192.168.0.2"), node_port_addresses=("primary",)).node_port_ips(
        "IPv4"
    ) == ("10.9.0.2",)


def test_kube_proxy_configuration_fields_are_read() -> None:
    data = {
        **KP,
        "mode": "nftables",
        "clusterCIDR": "10.0.0.0/8,fd00::/48",
        "hostnameOverride": "Node1",
        "nftables": {"masqueradeAll": True, "masqueradeBit": 12},
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": ["primary"],
        "conntrack": {"tcpBeLiberal": True},
        "ipvs": {"scheduler": "lc"},
    }
    config = build_config({}, data, "kp.yaml")
    assert config.cluster_cidrs == ("10.0.0.0/8", "fd00::/48")
    assert config.node_name == "node1"
    assert (config.masquerade_all, config.masquerade_bit) == (True, 12)
    assert config.localhost_nodeports is False
    assert config.node_port_addresses == ("primary",)
    assert config.conntrack_tcp_be_liberal is True
    assert config.ipvs_scheduler == "lc"


def test_flags_override_the_file() -> None:
    config = build_config(
        {"node_name": "n2", "masquerade_all": False}, {**KP, "iptables": {"masqueradeAll": True}}
    )
    assert (config.node_name, config.masquerade_all) == ("n2", False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "KubeProxyConfiguration", "apiVersion": "v1"}, "apiVersion"),
        ({**KP, "iptables": {"masqueradeBit": "14"}}, "iptables.masqueradeBit"),
        ({**KP, "iptables": []}, "iptables: must be an object"),
        ({**KP, "nodePortAddresses": "10.0.0.0/8"}, "nodePortAddresses"),
        ({**KP, "clusterCIDR": "10.0.0.0/8,11.0.0.0/8"}, "at most one cluster CIDR per IP family"),
        ({**KP, "iptables": {"masqueradeBit": 40}}, "masquerade_bit"),
    ],
)
def test_invalid_configuration_is_a_usage_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config({}, data, "kp.yaml")
