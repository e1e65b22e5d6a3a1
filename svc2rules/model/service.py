"""core/v1 Service (the fields a service proxy reads)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from svc2rules.model.checks import (
    Problems,
    cidr,
    dns1035_label,
    dns1123_subdomain,
    iana_svc_name,
    ip_address,
    port_number,
)
from svc2rules.model.legacy import LegacyReader, might_be_legacy
from svc2rules.model.meta import CanonicalObject, KubeModel, ObjectMeta

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
AFFINITIES = ("None", "ClientIP")
IP_FAMILIES = ("IPv4", "IPv6")
IP_MODES = ("VIP", "Proxy")
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SCHEDULER_ANNOTATION = "svc2rules.io/ipvs-scheduler"
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")


class ServicePortSpec(KubeModel):
    name: str = ""
    protocol: str = "TCP"
    port: int
    target_port: Any = Field(None, alias="targetPort")
    node_port: int | None = Field(None, alias="nodePort")
    app_protocol: str | None = Field(None, alias="appProtocol")

    @field_validator("target_port")
    @classmethod
    def _int_or_string(cls, value: Any) -> Any:
        # IntOrString: checked here so errors carry the field path, not union branch tags.
        if (
            value is None
            or (isinstance(value, int) and not isinstance(value, bool))
            or isinstance(value, str)
        ):
            return value
        raise ValueError("must be an integer or a string")


class ClientIPConfig(KubeModel):
    timeout_seconds: int | None = Field(None, alias="timeoutSeconds")


class SessionAffinityConfig(KubeModel):
    client_ip: ClientIPConfig | None = Field(None, alias="clientIP")


class ServiceSpec(KubeModel):
    type: str = "ClusterIP"
    cluster_ip: str | None = Field(None, alias="clusterIP")
    cluster_ips: list[str] = Field(default_factory=list, alias="clusterIPs")
    ip_families: list[str] = Field(default_factory=list, alias="ipFamilies")
    ports: list[ServicePortSpec] = Field(default_factory=list)
    selector: dict[str, str] | None = None
    external_ips: list[str] = Field(default_factory=list, alias="externalIPs")
    external_name: str | None = Field(None, alias="externalName")
    session_affinity: str = Field("None", alias="sessionAffinity")
    session_affinity_config: SessionAffinityConfig | None = Field(None, alias="sessionAffinityConfig")
    external_traffic_policy: str | None = Field(None, alias="externalTrafficPolicy")
    internal_traffic_policy: str | None = Field(None, alias="internalTrafficPolicy")
    load_balancer_source_ranges: list[str] = Field(default_factory=list, alias="loadBalancerSourceRanges")
    health_check_node_port: int | None = Field(None, alias="healthCheckNodePort")
    publish_not_ready_addresses: bool = Field(False, alias="publishNotReadyAddresses")
    traffic_distribution: str | None = Field(None, alias="trafficDistribution")


class LoadBalancerIngress(KubeModel):
    ip: str | None = None
    hostname: str | None = None
    ip_mode: str | None = Field(None, alias="ipMode")


class LoadBalancerStatus(KubeModel):
    ingress: list[LoadBalancerIngress] = Field(default_factory=list)


class ServiceStatus(KubeModel):
    load_balancer: LoadBalancerStatus = Field(default_factory=LoadBalancerStatus, alias="loadBalancer")


class Service(CanonicalObject):
    KIND: ClassVar[str] = "Service"
    API_VERSION: ClassVar[str] = "v1"

    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus = Field(default_factory=ServiceStatus)

    # -- legacy addresses (model.legacy) ------------------------------------------------
    def _canonical(self) -> Service:
        """This Service with its legacy addresses in canonical form (itself when it has none):
        the fields pkg/proxy/serviceport.go newBaseServiceInfo parses sloppily."""
        spec = self.spec
        ingress = self.status.load_balancer.ingress
        if not might_be_legacy(
            [
                spec.cluster_ip or "",
                *spec.cluster_ips,
                *spec.external_ips,
                *(r.strip() for r in spec.load_balancer_source_ranges),
                *(i.ip or "" for i in ingress),
            ]
        ):
            return self
        read = LegacyReader()
        cluster_ip = read.ip("spec.clusterIP", spec.cluster_ip) if spec.cluster_ip else spec.cluster_ip
        new_spec = spec.model_copy(
            update={
                "cluster_ip": cluster_ip,
                "cluster_ips": [
                    read.ip(f"spec.clusterIPs[{i}]", ip) for i, ip in enumerate(spec.cluster_ips)
                ],
                "external_ips": [
                    read.ip(f"spec.externalIPs[{i}]", ip) for i, ip in enumerate(spec.external_ips)
                ],
                "load_balancer_source_ranges": [
                    read.cidr(f"spec.loadBalancerSourceRanges[{i}]", r)
                    for i, r in enumerate(spec.load_balancer_source_ranges)
                ],
            }
        )
        new_ingress = [
            ing.model_copy(update={"ip": read.ip(f"status.loadBalancer.ingress[{i}].ip", ing.ip)})
            if ing.ip
            else ing
            for i, ing in enumerate(ingress)
        ]
        if not read.found:
            return self
        status = self.status.model_copy(
            update={"load_balancer": self.status.load_balancer.model_copy(update={"ingress": new_ingress})}
        )
        canonical = self.model_copy(update={"spec": new_spec, "status": status})
        canonical._legacy = tuple(read.found)
        return canonical

    # -- derived views, valid after check() found no problems -------------------------

    @property
    def is_headless(self) -> bool:
        return self.spec.cluster_ip == "None"

    @property
    def all_cluster_ips(self) -> tuple[str, ...]:
        """clusterIPs, falling back to clusterIP (as older manifests carry only that)."""
        ips = self.spec.cluster_ips or ([self.spec.cluster_ip] if self.spec.cluster_ip else [])
        return tuple(ip for ip in ips if ip not in ("", "None"))

    @property
    def externally_accessible_type(self) -> bool:
        return self.spec.type in ("NodePort", "LoadBalancer")

    @property
    def affinity_timeout(self) -> int | None:
        if self.spec.session_affinity != "ClientIP":
            return None
        cfg = self.spec.session_affinity_config
        if cfg and cfg.client_ip and cfg.client_ip.timeout_seconds is not None:
            return cfg.client_ip.timeout_seconds
        return DEFAULT_AFFINITY_TIMEOUT

    # -- validation ---------------------------------------------------------------------

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        super().check_metadata(metadata, problems)
        if metadata.name:
            dns1035_label(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = super().check()
        spec = self.spec
        if spec.type not in SERVICE_TYPES:
            problems.unsupported("spec.type", spec.type, SERVICE_TYPES)
            return problems
        self._check_cluster_ips(problems)
        self._check_ports(problems)
        for i, ip in enumerate(spec.external_ips):
            ip_address(problems, f"spec.externalIPs[{i}]", ip)
        for i, family in enumerate(spec.ip_families):
            if family not in IP_FAMILIES:
                problems.unsupported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES)
        self._check_affinity(problems)
        self._check_policies(problems)
        if spec.type == "ExternalName":
            if not spec.external_name:
                problems.required("spec.externalName")
            else:
                dns1123_subdomain(problems, "spec.externalName", spec.external_name.removesuffix("."))
        if spec.load_balancer_source_ranges and spec.type != "LoadBalancer":
            problems.forbidden(
                "spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"
            )
        for i, source_range in enumerate(spec.load_balancer_source_ranges):
            cidr(problems, f"spec.loadBalancerSourceRanges[{i}]", source_range)
        if spec.health_check_node_port is not None:
            port_number(problems, "spec.healthCheckNodePort", spec.health_check_node_port)
        scheduler = self.metadata.annotations.get(SCHEDULER_ANNOTATION)
        if scheduler is not None and scheduler not in IPVS_SCHEDULERS:
            problems.unsupported(f"metadata.annotations[{SCHEDULER_ANNOTATION}]", scheduler, IPVS_SCHEDULERS)
        for i, ingress in enumerate(self.status.load_balancer.ingress):
            path = f"status.loadBalancer.ingress[{i}]"
            if ingress.ip is not None:
                ip_address(problems, f"{path}.ip", ingress.ip)
            if ingress.hostname is not None:
                dns1123_subdomain(problems, f"{path}.hostname", ingress.hostname)
            if ingress.ip_mode is not None and ingress.ip_mode not in IP_MODES:
                problems.unsupported(f"{path}.ipMode", ingress.ip_mode, IP_MODES)
        return problems

    def _check_cluster_ips(self, problems: Problems) -> None:
        spec = self.spec
        if spec.type == "ExternalName":
            if spec.cluster_ip not in (None, "") or spec.cluster_ips:
                problems.forbidden("spec.clusterIP", "must be empty for ExternalName services")
            return
        if spec.cluster_ip not in (None, "", "None"):
            ip_address(problems, "spec.clusterIP", spec.cluster_ip)
        for i, ip in enumerate(spec.cluster_ips):
            if ip == "None":
                if i != 0 or len(spec.cluster_ips) > 1:
                    problems.invalid(f"spec.clusterIPs[{i}]", ip, "'None' must be the first and only value")
            else:
                ip_address(problems, f"spec.clusterIPs[{i}]", ip)
        if spec.cluster_ips and spec.cluster_ip not in (None, "") and spec.cluster_ips[0] != spec.cluster_ip:
            problems.invalid("spec.clusterIPs[0]", spec.cluster_ips[0], "must match `spec.clusterIP`")
        if len(spec.cluster_ips) == 2 and all(ip != "None" for ip in spec.cluster_ips):
            families = {":" in ip for ip in spec.cluster_ips}
            if len(families) != 2:
                problems.invalid("spec.clusterIPs", spec.cluster_ips, "must be one IPv4 and one IPv6 address")
        if len(spec.cluster_ips) > 2:
            problems.invalid("spec.clusterIPs", spec.cluster_ips, "may have at most 2 entries (dual-stack)")
        if self.is_headless and self.externally_accessible_type:
            problems.invalid(
                "spec.clusterIPs[0]", "None", f"may not be set to 'None' for {spec.type} services"
            )

    def _check_ports(self, problems: Problems) -> None:
        spec = self.spec
        if not spec.ports and spec.type != "ExternalName" and not self.is_headless:
            problems.required("spec.ports")
        names: set[str] = set()
        endpoints: set[tuple[int, str]] = set()
        node_ports: set[tuple[int, str]] = set()
        for i, port in enumerate(spec.ports):
            path = f"spec.ports[{i}]"
            if len(spec.ports) > 1 and not port.name:
                problems.required(f"{path}.name")
            if port.name:
                if iana_svc_name(problems, f"{path}.name", port.name) and port.name in names:
                    problems.duplicate(f"{path}.name", port.name)
                names.add(port.name)
            if port.protocol not in PROTOCOLS:
                problems.unsupported(f"{path}.protocol", port.protocol, PROTOCOLS)
            if port_number(problems, f"{path}.port", port.port):
                key = (port.port, port.protocol)
                if key in endpoints:
                    problems.duplicate(f"{path}", {"port": port.port, "protocol": port.protocol})
                endpoints.add(key)
            target = port.target_port
            if isinstance(target, int):
                port_number(problems, f"{path}.targetPort", target)
            elif isinstance(target, str):
                iana_svc_name(problems, f"{path}.targetPort", target)
            if port.node_port is not None and port.node_port != 0:
                if not self.externally_accessible_type:
                    problems.forbidden(f"{path}.nodePort", f"may not be used when `type` is '{spec.type}'")
                elif port_number(problems, f"{path}.nodePort", port.node_port):
                    nkey = (port.node_port, port.protocol)
                    if nkey in node_ports:
                        problems.duplicate(f"{path}.nodePort", port.node_port)
                    node_ports.add(nkey)

    def _check_affinity(self, problems: Problems) -> None:
        spec = self.spec
        if spec.session_affinity not in AFFINITIES:
            problems.unsupported("spec.sessionAffinity", spec.session_affinity, AFFINITIES)
            return
        cfg = spec.session_affinity_config
        timeout = cfg.client_ip.timeout_seconds if cfg and cfg.client_ip else None
        if spec.session_affinity == "ClientIP":
            if timeout is not None and not 1 <= timeout <= MAX_AFFINITY_TIMEOUT:
                problems.invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    f"must be greater than 0 and less than or equal to {MAX_AFFINITY_TIMEOUT}",
                )
        elif cfg is not None and cfg.client_ip is not None:
            problems.forbidden(
                "spec.sessionAffinityConfig", "must not be set when `sessionAffinity` is 'None'"
            )

    def _check_policies(self, problems: Problems) -> None:
        spec = self.spec
        etp = spec.external_traffic_policy
        if etp is not None and etp != "":
            if etp not in TRAFFIC_POLICIES:
                problems.unsupported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES)
            elif not (self.externally_accessible_type or spec.external_ips):
                problems.invalid(
                    "spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"
                )
        itp = spec.internal_traffic_policy
        if itp is not None and itp not in TRAFFIC_POLICIES:
            problems.unsupported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES)
        if spec.health_check_node_port and not (spec.type == "LoadBalancer" and etp == "Local"):
            problems.invalid(
                "spec.healthCheckNodePort",
                spec.health_check_node_port,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )


def is_proxied_by(service: Service, proxy_name: str | None) -> bool:
    """kube-proxy skips Services labelled for another proxy."""
    label = service.metadata.labels.get(PROXY_NAME_LABEL)
    return label is None or (proxy_name is not None and label == proxy_name)


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
