"""The node facts and proxy settings a compilation depends on.

Built from command-line flags, optionally on top of a kube-proxy
`KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1) file.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from svc2rules.errors import UsageError, quote_value

KUBE_PROXY_CONFIG_API = "kubeproxy.config.k8s.io/v1alpha1"
KUBE_PROXY_CONFIG_KIND = "KubeProxyConfiguration"


class ProxyConfig(BaseModel):
    """Everything about the node and the proxy that changes the rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_name: str | None = None
    node_ips: tuple[str, ...] = ()
    node_zone: str | None = None
    cluster_cidrs: tuple[str, ...] = ()
    masquerade_all: bool = False
    masquerade_bit: int = Field(14, ge=0, le=31)
    localhost_nodeports: bool = True
    node_port_addresses: tuple[str, ...] = ()
    service_proxy_name: str | None = None
    conntrack_tcp_be_liberal: bool = False
    ipvs_scheduler: str = "rr"

    @field_validator("node_ips")
    @classmethod
    def _ips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for ip in value:
            try:
                out.append(str(ipaddress.ip_address(ip.strip())))
            except ValueError:
                raise ValueError(f"invalid node IP {quote_value(ip)}") from None
        return tuple(out)

    @field_validator("cluster_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for text in value:
            try:
                out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"invalid cluster CIDR {quote_value(text)}") from None
        families = [":" in c for c in out]
        if len(families) != len(set(families)):
            raise ValueError("at most one cluster CIDR per IP family (kube-proxy's ClusterCIDR detector)")
        return tuple(out)

    @field_validator("node_port_addresses")
    @classmethod
    def _node_port_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for text in value:
            if text == "primary":
                out.append(text)
                continue
            try:
                out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"invalid nodePortAddresses entry {quote_value(text)}") from None
        return tuple(out)

    @model_validator(mode="after")
    def _unique_node_ips(self) -> ProxyConfig:
        if len(set(self.node_ips)) != len(self.node_ips):
            raise ValueError("duplicate node IP")
        return self

    @property
    def masquerade_mark(self) -> str:
        """The mark bit as kube-proxy prints it (bit 14 -> 0x4000)."""
        return f"{1 << self.masquerade_bit:#x}"

    def cluster_cidr(self, family: str) -> str | None:
        for c in self.cluster_cidrs:
            if (":" in c) == (family == "IPv6"):
                return c
        return None

    def node_ip(self, family: str) -> str | None:
        """The primary node IP of a family (the first given)."""
        for ip in self.node_ips:
            if (":" in ip) == (family == "IPv6"):
                return ip
        return None

    def node_port_ips(self, family: str) -> tuple[str, ...] | None:
        """Node IPs that accept NodePorts, or None when every local address does."""
        if not self.node_port_addresses:
            return None
        chosen: list[str] = []
        for entry in self.node_port_addresses:
            if entry == "primary":
                primary = self.node_ip(family)
                if primary:
                    chosen.append(primary)
                continue
            net = ipaddress.ip_network(entry)
            chosen.extend(ip for ip in self.node_ips if ipaddress.ip_address(ip) in net)
            if (net.version == 4) == (family == "IPv4") and net.overlaps(ipaddress.ip_network("127.0.0.0/8")):
                chosen.append("127.0.0.1")
        fam = [ip for ip in dict.fromkeys(chosen) if (":" in ip) == (family == "IPv6")]
        return tuple(sorted(fam, key=lambda ip: ipaddress.ip_address(ip)))


def build_config(
    overrides: dict[str, Any], config_file: dict[str, Any] | None = None, source: str = ""
) -> ProxyConfig:
    """Merge a KubeProxyConfiguration (if any) with flag overrides (flags win)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_from_kube_proxy_config(config_file, source))
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    try:
        return ProxyConfig(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise UsageError(f"{where}: {str(error['msg']).removeprefix('Value error, ')}") from None


def _from_kube_proxy_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    def fail(field: str, message: str) -> UsageError:
        return UsageError(f"{source}: {KUBE_PROXY_CONFIG_KIND}: {field}: {message}")

    if data.get("kind") != KUBE_PROXY_CONFIG_KIND:
        raise fail("kind", f"expected {KUBE_PROXY_CONFIG_KIND}, got {quote_value(data.get('kind'))}")
    if data.get("apiVersion") != KUBE_PROXY_CONFIG_API:
        raise fail(
            "apiVersion", f"expected {KUBE_PROXY_CONFIG_API}, got {quote_value(data.get('apiVersion'))}"
        )
    out: dict[str, Any] = {}

    def section(name: str) -> dict[str, Any]:
        value = data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise fail(name, "must be an object")
        return value

    def typed(container: dict[str, Any], key: str, path: str, kind: type) -> Any:
        value = container.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(path, f"Invalid value: {quote_value(value)}: must be {kind.__name__}")
        return value

    if (cidr := typed(data, "clusterCIDR", "clusterCIDR", str)) is not None:
        out["cluster_cidrs"] = tuple(c for c in cidr.split(",") if c.strip())
    if (hostname := typed(data, "hostnameOverride", "hostnameOverride", str)) is not None and hostname:
        out["node_name"] = hostname.strip().lower()
    mode = data.get("mode") or "iptables"
    iptables = section("iptables")
    nftables = section("nftables")
    masq_source = nftables if mode == "nftables" else iptables
    prefix = "nftables" if mode == "nftables" else "iptables"
    if (masq_all := typed(masq_source, "masqueradeAll", f"{prefix}.masqueradeAll", bool)) is not None:
        out["masquerade_all"] = masq_all
    if (bit := typed(masq_source, "masqueradeBit", f"{prefix}.masqueradeBit", int)) is not None:
        out["masquerade_bit"] = bit
    if (localhost := typed(iptables, "localhostNodePorts", "iptables.localhostNodePorts", bool)) is not None:
        out["localhost_nodeports"] = localhost
    addresses = data.get("nodePortAddresses")
    if addresses is not None:
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise fail("nodePortAddresses", "must be a list of CIDRs or 'primary'")
        out["node_port_addresses"] = tuple(addresses)
    conntrack = section("conntrack")
    if (liberal := typed(conntrack, "tcpBeLiberal", "conntrack.tcpBeLiberal", bool)) is not None:
        out["conntrack_tcp_be_liberal"] = liberal
    ipvs = section("ipvs")
    if (scheduler := typed(ipvs, "scheduler", "ipvs.scheduler", str)) is not None and scheduler:
        out["ipvs_scheduler"] = scheduler
    return out


def config_mode(data: dict[str, Any]) -> str | None:
    mode = data.get("mode")
    return mode if isinstance(mode, str) and mode else None
