"""Node and proxy settings: flags, kube-proxy configuration files, derived values."""

from __future__ import annotations

import pytest

from svc2rules.config import (
    KUBE_PROXY_FIELDS,
    READ_FIELDS,
    ProxyConfig,
    build_config,
    parse_config_text,
    read_config,
    unknown_fields,
)
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
        (
            {**KP, "iptables": {"masqueradeBit": 40}},
            r"iptables.masqueradeBit: Invalid value: 40: must be within",
        ),
        (
            {**KP, "clusterCIDR": "10.0.0.0/99"},
            r'kp.yaml: KubeProxyConfiguration: clusterCIDR: invalid CIDR "10.0.0.0/99"',
        ),
        ({**KP, "nodePortAddresses": ["10.0.0.0/8", "bogus"]}, r'nodePortAddresses: invalid CIDR "bogus"'),
        ({**KP, "bindAddress": "10.0.0.300"}, r'bindAddress: invalid IP address "10.0.0.300"'),
        ({**KP, "hostnameOverride": "  "}, r"hostnameOverride: invalid node name"),
    ],
)
def test_invalid_configuration_is_a_usage_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config({}, data, "kp.yaml")


# What `kubectl -n kube-system get cm kube-proxy -o yaml` prints on a kubeadm cluster (trimmed of
# managedFields): every field of v1alpha1 spelled out, most of them empty.
KUBEADM_CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  annotations:
    kubeadm.kubernetes.io/component-config.hash: sha256:0123
  labels:
    app: kube-proxy
  name: kube-proxy
  namespace: kube-system
data:
  config.conf: |-
    apiVersion: kubeproxy.config.k8s.io/v1alpha1
    bindAddress: 0.0.0.0
    bindAddressHardFail: false
    clientConnection:
      acceptContentTypes: ""
      burst: 0
      contentType: ""
      kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
      qps: 0
    clusterCIDR: 10.244.0.0/16
    configSyncPeriod: 0s
    conntrack:
      maxPerCore: null
      min: null
      tcpBeLiberal: false
      tcpCloseWaitTimeout: null
      tcpEstablishedTimeout: null
      udpStreamTimeout: 0s
      udpTimeout: 0s
    detectLocal:
      bridgeInterface: ""
      interfaceNamePrefix: ""
    detectLocalMode: ""
    enableProfiling: false
    healthzBindAddress: ""
    hostnameOverride: ""
    iptables:
      localhostNodePorts: null
      masqueradeAll: false
      masqueradeBit: null
      minSyncPeriod: 0s
      syncPeriod: 0s
    ipvs:
      excludeCIDRs: null
      minSyncPeriod: 0s
      scheduler: ""
      strictARP: false
      syncPeriod: 0s
      tcpFinTimeout: 0s
      tcpTimeout: 0s
      udpTimeout: 0s
    kind: KubeProxyConfiguration
    logging:
      flushFrequency: 0
      options:
        json:
          infoBufferSize: "0"
        text:
          infoBufferSize: "0"
      verbosity: 0
    metricsBindAddress: ""
    mode: "nftables"
    nftables:
      masqueradeAll: false
      masqueradeBit: null
      minSyncPeriod: 0s
      syncPeriod: 0s
    nodePortAddresses: null
    oomScoreAdj: null
    portRange: ""
    showHiddenMetricsForVersion: ""
    winkernel:
      enableDSR: false
      forwardHealthCheckVip: false
      networkName: ""
      rootHnsEndpointName: ""
      sourceVip: ""
  kubeconfig.conf: |-
    apiVersion: v1
    kind: Config
"""


def test_kubeadms_config_map_is_read_as_is() -> None:
    file = parse_config_text(KUBEADM_CONFIG_MAP, "cm.yaml")
    assert file.source == "cm.yaml: ConfigMap kube-system/kube-proxy: data[config.conf]"
    assert file.mode == "nftables"
    # Every field kubeadm writes is a field of v1alpha1: nothing to report.
    assert unknown_fields(file.data) == []
    built = read_config({}, file)
    assert built.config.cluster_cidrs == ("10.244.0.0/16",)
    assert built.config.node_ips == ()  # bindAddress 0.0.0.0 names no node IP
    assert built.warnings == ()


def test_a_config_map_without_config_conf_is_named() -> None:
    with pytest.raises(UsageError, match=r"cm.yaml: ConfigMap kube-system/other: data: no 'config.conf' key"):
        parse_config_text(
            "kind: ConfigMap\nmetadata: {name: other, namespace: kube-system}\ndata: {}\n", "cm.yaml"
        )


def test_errors_inside_a_config_map_name_the_file_the_config_map_and_the_field() -> None:
    text = KUBEADM_CONFIG_MAP.replace("clusterCIDR: 10.244.0.0/16", "clusterCIDR: 10.244.0.0/99")
    with pytest.raises(UsageError) as caught:
        read_config({}, parse_config_text(text, "cm.yaml"))
    assert str(caught.value) == (
        "cm.yaml: ConfigMap kube-system/kube-proxy: data[config.conf]: KubeProxyConfiguration: "
        'clusterCIDR: invalid CIDR "10.244.0.0/99"'
    )


def test_unknown_fields_are_named_with_their_path_and_the_field_meant() -> None:
    data = {
        **KP,
        "clusterCidr": "10.0.0.0/8",
        "iptables": {"masqueradeAl": True, "syncPeriod": "30s"},
        "ipvs": {"scheduler": "rr", "bogus": 1},
        "featureGates": {"AnyGate": True},
        "logging": {"options": {"json": {"whatever": 1}}},
    }
    assert unknown_fields(data) == [
        "clusterCidr: unknown field (did you mean 'clusterCIDR'?)",
        "iptables.masqueradeAl: unknown field (did you mean 'masqueradeAll'?)",
        "ipvs.bogus: unknown field",
    ]


def test_the_fields_svc2rules_reads_are_fields_of_v1alpha1() -> None:
    for path in READ_FIELDS:
        schema = KUBE_PROXY_FIELDS
        *parents, leaf = path.split(".")
        for parent in parents:
            inner = schema[parent]
            assert inner is not None, path
            schema = inner
        assert leaf in schema, path


def test_a_cidr_with_host_bits_is_taken_as_its_network_with_a_warning() -> None:
    built = read_config({"cluster_cidrs": ("10.244.0.1/16",)})
    assert built.config.cluster_cidrs == ("10.244.0.0/16",)
    assert built.warnings == (
        "--cluster-cidr: 10.244.0.1/16 has host bits set; using 10.244.0.0/16, as kube-proxy does",
    )
    file = parse_config_text(
        "\n".join(f"{k}: {v}" for k, v in KP.items()) + "\nclusterCIDR: 10.0.0.1/8\n", "kp.yaml"
    )
    assert read_config({}, file).warnings == (
        "kp.yaml: KubeProxyConfiguration: clusterCIDR: 10.0.0.1/8 has host bits set; using 10.0.0.0/8, as kube-proxy does",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"node_ips": ("192.168.0.300",)}, '--node-ip: invalid IP address "192.168.0.300"'),
        ({"node_ips": ("192.168.0.2", "192.168.0.2")}, '--node-ip: duplicate node IP "192.168.0.2"'),
        (
            {"cluster_cidrs": ("10.0.0.0/8", "11.0.0.0/8")},
            "--cluster-cidr: at most one cluster CIDR per IP family",
        ),
        ({"node_port_addresses": ("nowhere",)}, '--nodeport-addresses: invalid CIDR "nowhere"'),
        ({"node_name": " "}, "--node-name: invalid node name"),
    ],
)
def test_flag_errors_name_the_flag_and_the_value(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_config(overrides)
    assert str(caught.value).startswith(message), caught.value


def test_node_names_are_trimmed_and_lower_cased_as_kube_proxy_does() -> None:
    assert read_config({"node_name": " Node1 "}).config.node_name == "node1"


def test_bind_address_is_the_primary_node_ip_and_flags_win() -> None:
    data = {**KP, "bindAddress": "192.168.0.7"}
    assert build_config({}, data, "kp.yaml").node_ips == ("192.168.0.7",)
    assert build_config({"node_ips": ("10.1.1.1",)}, data, "kp.yaml").node_ips == ("10.1.1.1",)


def test_a_detect_local_mode_other_than_cluster_cidr_is_said_to_be_unsupported() -> None:
    file = parse_config_text(
        "\n".join(f"{k}: {v}" for k, v in KP.items()) + "\ndetectLocalMode: NodeCIDR\n", "kp.yaml"
    )
    (warning,) = read_config({}, file).warnings
    assert warning.startswith("kp.yaml: KubeProxyConfiguration: detectLocalMode: NodeCIDR is not supported")
