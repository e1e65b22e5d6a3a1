"""discovery.k8s.io/v1 EndpointSlice."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from svc2rules.model.checks import Problems, dns1123_label, dns1123_subdomain, ip_address, port_number
from svc2rules.model.meta import KubeModel, KubeObject, ObjectMeta
from svc2rules.model.service import PROTOCOLS

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100


class EndpointConditions(KubeModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ForZone(KubeModel):
    name: str


class ForNode(KubeModel):
    name: str


class EndpointHints(KubeModel):
    for_zones: list[ForZone] = Field(default_factory=list, alias="forZones")
    for_nodes: list[ForNode] = Field(default_factory=list, alias="forNodes")


class SliceEndpoint(KubeModel):
    addresses: list[str]
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None
    node_name: str | None = Field(None, alias="nodeName")
    zone: str | None = None
    hints: EndpointHints | None = None


class EndpointPort(KubeModel):
    # API defaulting: a missing name is "" and a missing protocol is TCP.
    name: str | None = ""
    protocol: str | None = "TCP"
    port: int | None = None
    app_protocol: str | None = Field(None, alias="appProtocol")


class EndpointSlice(KubeObject):
    KIND: ClassVar[str] = "EndpointSlice"
    API_VERSION: ClassVar[str] = "discovery.k8s.io/v1"

    address_type: str = Field(alias="addressType")
    endpoints: list[SliceEndpoint] | None = None
    ports: list[EndpointPort] | None = None

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        super().check_metadata(metadata, problems)
        if metadata.name:
            dns1123_subdomain(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = super().check()
        if self.address_type not in ADDRESS_TYPES:
            problems.unsupported("addressType", self.address_type, ADDRESS_TYPES)
            return problems
        endpoints = self.endpoints or []
        if len(endpoints) > MAX_ENDPOINTS:
            problems.add("endpoints", f"Too many: {len(endpoints)}: must have at most {MAX_ENDPOINTS} items")
        for i, ep in enumerate(endpoints):
            self._check_endpoint(problems, f"endpoints[{i}]", ep)
        ports = self.ports or []
        if len(ports) > MAX_PORTS:
            problems.add("ports", f"Too many: {len(ports)}: must have at most {MAX_PORTS} items")
        names: set[str] = set()
        for i, port in enumerate(ports):
            path = f"ports[{i}]"
            name = port.name or ""
            if name:
                dns1123_label(problems, f"{path}.name", name)
            if name in names:
                problems.duplicate(f"{path}.name", name)
            names.add(name)
            if port.protocol is not None and port.protocol not in PROTOCOLS:
                problems.unsupported(f"{path}.protocol", port.protocol, PROTOCOLS)
            if port.port is not None:
                port_number(problems, f"{path}.port", port.port)
        return problems

    def _check_endpoint(self, problems: Problems, path: str, ep: SliceEndpoint) -> None:
        if not ep.addresses:
            problems.required(f"{path}.addresses")
        elif len(ep.addresses) > MAX_ADDRESSES:
            problems.add(f"{path}.addresses", f"Too many: {len(ep.addresses)}: must have at most 100 items")
        for j, address in enumerate(ep.addresses):
            if self.address_type == "FQDN":
                dns1123_subdomain(problems, f"{path}.addresses[{j}]", address)
            else:
                ip_address(problems, f"{path}.addresses[{j}]", address, self.address_type)
        if ep.hostname is not None:
            dns1123_label(problems, f"{path}.hostname", ep.hostname)
        if ep.node_name is not None:
            dns1123_subdomain(problems, f"{path}.nodeName", ep.node_name)
