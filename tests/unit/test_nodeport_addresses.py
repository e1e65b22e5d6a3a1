"""nodePortAddresses as kube-proxy reads it: `primary` (cmd/kube-proxy/app/server.go,
newProxyServer: the node IP of each family unless loopback), MatchAll for a family without a CIDR
of its own or with its zero CIDR (pkg/proxy/util/nodeport_addresses.go, NewNodePortAddresses),
`primary` and CIDRs not mixed (pkg/proxy/apis/config/validation,
validateKubeProxyNodePortAddress), and nftables mode's unset value `primary`
(cmd/kube-proxy/app/server_linux.go, platformApplyDefaults)."""

from __future__ import annotations

import pytest

from svc2rules.config import ConfigFile, ProxyConfig, read_config
from svc2rules.errors import UsageError

V4, V6 = "IPv4", "IPv6"
NODE = ProxyConfig(node_ips=("192.168.0.2", "10.1.0.2", "fd00::2"))


def ips(config: ProxyConfig, family: str, *, nftables: bool = False) -> tuple[str, ...] | None:
    return config.node_port_ips(family, unset_means_primary=nftables)


def test_unset_is_every_local_address_except_in_nftables_where_it_is_the_primary_node_ip() -> None:
    assert ips(NODE, V4) is None and ips(NODE, V6) is None
    assert ips(NODE, V4, nftables=True) == ("192.168.0.2",)
    assert ips(NODE, V6, nftables=True) == ("fd00::2",)
    # No node IP of the family (or a loopback one): kube-proxy has no primary CIDR, so MatchAll.
    assert ips(ProxyConfig(), V4, nftables=True) is None
    assert ips(ProxyConfig(node_ips=("127.0.0.1",)), V4, nftables=True) is None


def test_cidrs_select_node_ips_per_family_and_a_zero_cidr_or_no_cidr_matches_all() -> None:
    only_v4 = NODE.model_copy(update={"node_port_addresses": ("10.0.0.0/8",)})
    assert ips(only_v4, V4) == ("10.1.0.2",)
    assert ips(only_v4, V6) is None  # no IPv6 CIDR: every IPv6 local address
    everywhere = NODE.model_copy(update={"node_port_addresses": ("10.0.0.0/8", "0.0.0.0/0")})
    assert ips(everywhere, V4, nftables=True) is None
    nowhere = NODE.model_copy(update={"node_port_addresses": ("172.16.0.0/12",)})
    assert ips(nowhere, V4) == ()


def test_primary_and_cidrs_are_not_mixed() -> None:
    with pytest.raises(UsageError, match="--nodeport-addresses: can't use both 'primary' and CIDRs"):
        read_config({"node_port_addresses": ("primary", "10.0.0.0/8")})
    assert read_config({"node_port_addresses": ("primary",)}).config.node_port_addresses == ("primary",)
    data = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "nodePortAddresses": ["10.0.0.0/8", "primary"],
    }
    with pytest.raises(
        UsageError, match=r"kp\.yaml: KubeProxyConfiguration: nodePortAddresses: can.t use both"
    ):
        read_config({}, ConfigFile(data, "kp.yaml"))
