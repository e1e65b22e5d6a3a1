"""The node facts and proxy settings a compilation depends on.

Built from command-line flags, optionally on top of a kube-proxy `KubeProxyConfiguration`
(kubeproxy.config.k8s.io/v1alpha1) file, or kubeadm's `kube-proxy` ConfigMap holding one in
`data["config.conf"]`. Like kube-proxy, a file is decoded strictly first: fields v1alpha1 does
not have are reported (kube-proxy falls back to lenient decoding and logs what strict decoding
rejected); invalid values are errors naming the file, the field and the value.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from svc2rules.addresses import strict_ip, strict_network
from svc2rules.dns_names import dns1123_subdomain_problem
from svc2rules.errors import UsageError, quote_value
from svc2rules.family import IPFamily

KUBE_PROXY_CONFIG_API = "kubeproxy.config.k8s.io/v1alpha1"
KUBE_PROXY_CONFIG_KIND = "KubeProxyConfiguration"
# kubeadm keeps the KubeProxyConfiguration in this key of the kube-system/kube-proxy ConfigMap.
CONFIG_MAP_KEY = "config.conf"

# Every field of KubeProxyConfiguration v1alpha1 (k8s.io/kube-proxy/config/v1alpha1/types.go):
# a valid field svc2rules has no use for is not "unknown". A nested dict lists an object's
# fields; None accepts any value (maps and objects svc2rules never looks into).
_Schema = Mapping[str, "_Schema | None"]
KUBE_PROXY_FIELDS: _Schema = {
    "apiVersion": None,
    "kind": None,
    "featureGates": None,
    "clientConnection": dict.fromkeys(("kubeconfig", "acceptContentTypes", "contentType", "qps", "burst")),
    "logging": dict.fromkeys(("format", "flushFrequency", "verbosity", "vmodule", "options")),
    "hostnameOverride": None,
    "bindAddress": None,
    "healthzBindAddress": None,
    "metricsBindAddress": None,
    "bindAddressHardFail": None,
    "enableProfiling": None,
    "showHiddenMetricsForVersion": None,
    "mode": None,
    "iptables": dict.fromkeys(
        (
            "masqueradeBit",
            "masqueradeAll",
            "localhostNodePorts",
            "snatNodeInternalIP",
            "syncPeriod",
            "minSyncPeriod",
        )
    ),
    "ipvs": dict.fromkeys(
        (
            "syncPeriod",
            "minSyncPeriod",
            "scheduler",
            "excludeCIDRs",
            "strictARP",
            "tcpTimeout",
            "tcpFinTimeout",
            "udpTimeout",
        )
    ),
    "nftables": dict.fromkeys(("masqueradeBit", "masqueradeAll", "syncPeriod", "minSyncPeriod")),
    "winkernel": dict.fromkeys(
        ("networkName", "sourceVip", "enableDSR", "rootHnsEndpointName", "forwardHealthCheckVip")
    ),
    "detectLocalMode": None,
    "detectLocal": dict.fromkeys(("bridgeInterface", "interfaceNamePrefix")),
    "clusterCIDR": None,
    "nodePortAddresses": None,
    "oomScoreAdj": None,
    "conntrack": dict.fromkeys(
        (
            "maxPerCore",
            "min",
            "tcpEstablishedTimeout",
            "tcpCloseWaitTimeout",
            "tcpBeLiberal",
            "udpTimeout",
            "udpStreamTimeout",
        )
    ),
    "configSyncPeriod": None,
    "portRange": None,
    "windowsRunAsService": None,
}

# The fields svc2rules reads; every other field of KUBE_PROXY_FIELDS is valid and ignored.
READ_FIELDS = (
    "mode",
    "clusterCIDR",
    "hostnameOverride",
    "bindAddress",
    "detectLocalMode",
    "iptables.masqueradeAll",
    "iptables.masqueradeBit",
    "iptables.localhostNodePorts",
    "nftables.masqueradeAll",
    "nftables.masqueradeBit",
    "nodePortAddresses",
    "conntrack.tcpBeLiberal",
    "ipvs.scheduler",
)

# The command-line flag that sets each ProxyConfig field: errors name the flag, not the field.
FLAG_NAMES = {
    "node_name": "--node-name",
    "node_ips": "--node-ip",
    "node_zone": "--node-zone",
    "cluster_cidrs": "--cluster-cidr",
    "masquerade_all": "--masquerade-all",
    "node_port_addresses": "--nodeport-addresses",
    "service_cidrs": "--service-cidr",
    "conntrack_tcp_be_liberal": "--conntrack-tcp-be-liberal",
}


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
    # None: the backend's default (kube-proxy's nftables mode relies on the sysctl being set;
    # its iptables mode drops invalid packets instead and leaves it alone).
    conntrack_tcp_be_liberal: bool | None = None
    # The service CIDRs (kube-apiserver's --service-cluster-ip-range; a cluster's ServiceCIDR
    # objects add to them in the plan): addresses in them no Service holds are dropped, undefined
    # ports of a ClusterIP rejected (kube-proxy's nftables cluster-ips-check).
    service_cidrs: tuple[str, ...] = ()
    ipvs_scheduler: str = "rr"

    @field_validator("node_ips")
    @classmethod
    def _ips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_ip(ip) for ip in value)

    @field_validator("cluster_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = [parse_cidr(text)[0] for text in value]
        families = [IPFamily.of(c) for c in out]
        if len(families) != len(set(families)):
            raise ValueError("at most one cluster CIDR per IP family (kube-proxy's ClusterCIDR detector)")
        return tuple(out)

    @field_validator("service_cidrs")
    @classmethod
    def _service_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return one_service_cidr_per_family(tuple(parse_cidr(text)[0] for text in value))

    @field_validator("node_port_addresses")
    @classmethod
    def _node_port_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(text if text == "primary" else parse_cidr(text)[0] for text in value)

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

    def node_port_ips(self, family: str, *, unset_means_primary: bool = False) -> tuple[str, ...] | None:
        """Node IPs that accept NodePorts, or None when every local address does.

        As kube-proxy reads nodePortAddresses: `primary` stands for the family's node IP unless
        it is loopback (cmd/kube-proxy/app/server.go, newProxyServer), and a family left without
        a CIDR of its own, or given its zero CIDR, matches every local address
        (pkg/proxy/util/nodeport_addresses.go, NewNodePortAddresses: MatchAll). Its nftables
        mode reads an unset nodePortAddresses as `primary` (`unset_means_primary`;
        cmd/kube-proxy/app/server_linux.go, platformApplyDefaults)."""
        entries = self.node_port_addresses or (("primary",) if unset_means_primary else ())
        primary = self.node_ip(family)
        own: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            if entry == "primary":
                if primary is not None and not ipaddress.ip_address(primary).is_loopback:
                    own.append(ipaddress.ip_network(primary))
            elif (":" in entry) == (family == "IPv6"):
                own.append(ipaddress.ip_network(entry))
        if not own or any(net.prefixlen == 0 for net in own):
            return None
        chosen: list[str] = []
        for net in own:
            chosen.extend(ip for ip in self.node_ips if ipaddress.ip_address(ip) in net)
            # Loopback NodePorts are IPv4's alone (kube-proxy's localhostNodePorts: route_localnet
            # has no IPv6 counterpart).
            v4 = IPFamily.IPv4
            if (
                family == v4
                and net.version == v4.version
                and net.overlaps(ipaddress.ip_network(v4.loopback_cidr))
            ):
                chosen.append(v4.loopback)
        fam = [ip for ip in dict.fromkeys(chosen) if (":" in ip) == (family == "IPv6")]
        return tuple(sorted(fam, key=lambda ip: ipaddress.ip_address(ip)))


# -- values, wherever they come from ---------------------------------------------------------------


def parse_ip(text: str) -> str:
    try:
        return str(strict_ip(text.strip()))  # no IPv6 zone: Go's parser refuses one
    except ValueError:
        raise ValueError(f"invalid IP address {quote_value(text)}") from None


def parse_cidr(text: str) -> tuple[str, bool]:
    """The network a CIDR names, and whether it was written with host bits set. kube-proxy
    parses CIDRs with Go's net.ParseCIDR, which accepts host bits and keeps the network; so do we
    (the caller warns)."""
    try:
        network = strict_network(text.strip())  # no IPv6 zone, no netmask: as net.ParseCIDR
    except ValueError:
        raise ValueError(f"invalid CIDR {quote_value(text)}") from None
    return str(network), network.network_address != ipaddress.ip_address(text.strip().split("/")[0])


def parse_node_name(text: str) -> str:
    """kube-proxy's reading of --hostname-override: trimmed and lower-cased, never empty."""
    name = text.strip().lower()
    if not name:
        raise ValueError(f"invalid node name {quote_value(text)}: must not be empty")
    # A Node's name, as the API server validates it (no endpoint could name anything else).
    problem = dns1123_subdomain_problem(name)
    if problem is not None:
        raise ValueError(f"invalid node name {quote_value(text)}: {problem}")
    return name


# -- the configuration file --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A KubeProxyConfiguration as read from a file; `source` is how messages name where it is
    (the file, and the ConfigMap key it came from)."""

    data: dict[str, Any]
    source: str

    def where(self, field: str) -> str:
        return f"{self.source}: {KUBE_PROXY_CONFIG_KIND}: {field}"

    @property
    def mode(self) -> str | None:
        mode = self.data.get("mode")
        return mode if isinstance(mode, str) and mode else None


def parse_config_text(text: str, path: str) -> ConfigFile:
    """A KubeProxyConfiguration file, or kubeadm's `kube-proxy` ConfigMap (as `kubectl -n
    kube-system get cm kube-proxy -o yaml` prints it), whose data["config.conf"] holds one."""
    data = _yaml_object(text, path)
    if data.get("kind") != "ConfigMap":
        return ConfigFile(data, path)
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    holder = (
        f"{path}: ConfigMap {meta.get('namespace') or '<no namespace>'}/{meta.get('name') or '<unnamed>'}"
    )
    entries = data.get("data")
    conf = entries.get(CONFIG_MAP_KEY) if isinstance(entries, dict) else None
    if not isinstance(conf, str):
        raise UsageError(
            f"{holder}: data: no {CONFIG_MAP_KEY!r} key holding a {KUBE_PROXY_CONFIG_KIND} "
            "(kubeadm's kube-proxy ConfigMap has one)"
        )
    source = f"{holder}: data[{CONFIG_MAP_KEY}]"
    return ConfigFile(_yaml_object(conf, source), source)


def _yaml_object(text: str, source: str) -> dict[str, Any]:
    import yaml  # only a config file needs it (~25 ms to import)

    try:
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a {KUBE_PROXY_CONFIG_KIND} object")
    return data


def unknown_fields(data: Mapping[str, Any]) -> list[str]:
    """The fields of a KubeProxyConfiguration that v1alpha1 does not have, as `path: unknown
    field`, with the known field it most resembles (a misspelling is the usual cause)."""
    found: list[str] = []

    def walk(obj: Mapping[str, Any], schema: _Schema, prefix: str) -> None:
        for key, value in obj.items():
            name = str(key)
            if name not in schema:
                found.append(f"{prefix}{name}: unknown field{_suggestion(name, schema)}")
                continue
            inner = schema[name]
            if inner is not None and isinstance(value, dict):
                walk(value, inner, f"{prefix}{name}.")

    walk(data, KUBE_PROXY_FIELDS, "")
    return found


def _suggestion(name: str, schema: _Schema) -> str:
    folded = {known.lower(): known for known in schema}
    close = folded.get(name.lower()) or next(
        iter(difflib.get_close_matches(name, list(schema), 1, 0.75)), None
    )
    return f" (did you mean {close!r}?)" if close else ""


# -- building the config ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltConfig:
    """The config, and what the user should hear about how it was read."""

    config: ProxyConfig
    warnings: tuple[str, ...] = ()


def build_config(
    overrides: dict[str, Any], config_file: dict[str, Any] | None = None, source: str = ""
) -> ProxyConfig:
    """Merge a KubeProxyConfiguration (if any) with flag overrides (flags win)."""
    file = ConfigFile(config_file, source) if config_file is not None else None
    return read_config(overrides, file).config


def read_config(overrides: Mapping[str, Any], file: ConfigFile | None = None) -> BuiltConfig:
    """The file's values, then the flags' (`overrides`, by ProxyConfig field; None or () means
    not given). Each value is checked where it was given, so an error names the flag (or the file
    and its field) and the value."""
    warnings: list[str] = []
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_from_kube_proxy_config(file, warnings))
    for name, value in overrides.items():
        if value is None or value == ():
            continue
        flag = FLAG_NAMES.get(name, name)
        try:
            values[name] = _flag_value(name, value, flag, warnings)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    try:
        return BuiltConfig(ProxyConfig(**values), tuple(warnings))
    except ValidationError as exc:  # pragma: no cover - every value was checked where it was given
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise UsageError(f"{where}: {str(error['msg']).removeprefix('Value error, ')}") from None


def _flag_value(name: str, value: Any, flag: str, warnings: list[str]) -> Any:
    """One flag's value as ProxyConfig keeps it; ValueError says what is wrong with it."""
    if name == "node_name":
        return parse_node_name(value)
    if name == "node_ips":
        ips = tuple(parse_ip(ip) for ip in value)
        duplicates = sorted({ip for ip in ips if ips.count(ip) > 1})
        if duplicates:
            raise ValueError(f"duplicate node IP {quote_value(duplicates[0])}")
        return ips
    if name == "cluster_cidrs":
        return _one_per_family(_networks(value, flag, warnings))
    if name == "node_port_addresses":
        return _networks(value, flag, warnings, primary=True)
    if name == "service_cidrs":
        return one_service_cidr_per_family(_networks(value, flag, warnings))
    return value


def _networks(entries: Any, where: str, warnings: list[str], *, primary: bool = False) -> tuple[str, ...]:
    """CIDRs (and, for nodePortAddresses, the keyword 'primary'), a warning per CIDR written
    with host bits set."""
    out: list[str] = []
    if primary and "primary" in entries and len(entries) != 1:
        # kube-proxy's validateKubeProxyNodePortAddress (pkg/proxy/apis/config/validation).
        raise ValueError("can't use both 'primary' and CIDRs")
    for text in entries:
        if primary and text == "primary":
            out.append(text)
            continue
        network, host_bits = parse_cidr(text)
        if host_bits:
            warnings.append(f"{where}: {text.strip()} has host bits set; using {network}, as kube-proxy does")
        out.append(network)
    return tuple(out)


def _one_per_family(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    families = [IPFamily.of(c) for c in cidrs]
    if len(families) != len(set(families)):
        raise ValueError(
            f"at most one cluster CIDR per IP family (kube-proxy's ClusterCIDR detector), got {', '.join(cidrs)}"
        )
    return cidrs


def one_service_cidr_per_family(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted (IPv4 first), deduplicated; at most one per family, as kube-apiserver's
    --service-cluster-ip-range (one primary and one secondary range of the other family)."""
    unique = sorted(set(cidrs), key=lambda c: (IPFamily.of(c).version, c))
    families = [IPFamily.of(c) for c in unique]
    if len(families) != len(set(families)):
        raise ValueError(f"at most one service CIDR per IP family, got {', '.join(unique)}")
    return tuple(unique)


def _from_kube_proxy_config(file: ConfigFile, warnings: list[str]) -> dict[str, Any]:
    data = file.data

    def fail(field: str, message: str) -> UsageError:
        return UsageError(f"{file.where(field)}: {message}")

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

    def checked(path: str, read: Callable[[str], Any], text: str) -> Any:
        try:
            return read(text)
        except ValueError as exc:
            raise fail(path, str(exc)) from None

    if (cidr := typed(data, "clusterCIDR", "clusterCIDR", str)) is not None:
        entries = [c for c in cidr.split(",") if c.strip()]
        out["cluster_cidrs"] = checked(
            "clusterCIDR",
            lambda _: _one_per_family(_networks(entries, file.where("clusterCIDR"), warnings)),
            cidr,
        )
    if (hostname := typed(data, "hostnameOverride", "hostnameOverride", str)) is not None and hostname:
        out["node_name"] = checked("hostnameOverride", parse_node_name, hostname)
    if (bind := typed(data, "bindAddress", "bindAddress", str)) is not None and bind.strip():
        # kube-proxy: a bindAddress other than 0.0.0.0 or :: is the node's primary IP.
        address = checked("bindAddress", parse_ip, bind)
        if not ipaddress.ip_address(address).is_unspecified:
            out["node_ips"] = (address,)
    detect = typed(data, "detectLocalMode", "detectLocalMode", str)
    if detect not in (None, "", "ClusterCIDR"):
        warnings.append(
            f"{file.where('detectLocalMode')}: {detect} is not supported; svc2rules tells pod "
            "traffic apart by the cluster CIDR (ClusterCIDR)"
        )
    mode = data.get("mode") or "iptables"
    iptables = section("iptables")
    nftables = section("nftables")
    masq_source = nftables if mode == "nftables" else iptables
    prefix = "nftables" if mode == "nftables" else "iptables"
    if (masq_all := typed(masq_source, "masqueradeAll", f"{prefix}.masqueradeAll", bool)) is not None:
        out["masquerade_all"] = masq_all
    if (bit := typed(masq_source, "masqueradeBit", f"{prefix}.masqueradeBit", int)) is not None:
        if not 0 <= bit <= 31:
            raise fail(f"{prefix}.masqueradeBit", f"Invalid value: {bit}: must be within the range [0, 31]")
        out["masquerade_bit"] = bit
    if (localhost := typed(iptables, "localhostNodePorts", "iptables.localhostNodePorts", bool)) is not None:
        out["localhost_nodeports"] = localhost
    addresses = data.get("nodePortAddresses")
    if addresses is not None:
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise fail("nodePortAddresses", "must be a list of CIDRs or 'primary'")
        out["node_port_addresses"] = checked(
            "nodePortAddresses",
            lambda _: _networks(addresses, file.where("nodePortAddresses"), warnings, primary=True),
            ",".join(addresses),
        )
    conntrack = section("conntrack")
    if (liberal := typed(conntrack, "tcpBeLiberal", "conntrack.tcpBeLiberal", bool)) is not None:
        out["conntrack_tcp_be_liberal"] = liberal
    ipvs = section("ipvs")
    if (scheduler := typed(ipvs, "scheduler", "ipvs.scheduler", str)) is not None and scheduler:
        out["ipvs_scheduler"] = scheduler
    return out
