"""discovery.k8s.io/v1 EndpointSlice, and v1beta1 read as the API server converts it to v1."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from svc2rules.model.checks import Problems, dns1123_label, dns1123_subdomain, ip_address, port_number
from svc2rules.model.legacy import LegacyReader, might_be_legacy
from svc2rules.model.meta import CanonicalObject, KubeModel, ObjectMeta
from svc2rules.model.service import PROTOCOLS

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100


class EndpointConditions(KubeModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


_NO_CONDITIONS = EndpointConditions()  # frozen: every endpoint without conditions shares it
_CONDITIONS = frozenset(("ready", "serving", "terminating"))
# At most 3**3 entries per key order: the cache is bounded by the fields, not by the input.
_SHARED_CONDITIONS: dict[tuple[tuple[str, Any], ...], EndpointConditions] = {}


def _shared_conditions(data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Every endpoint has conditions and a cluster has only a few distinct ones: one frozen
    instance each saves a third of a large input's memory. Only inputs every validation mode
    reads alike are shared (booleans and nulls of known fields)."""
    if not isinstance(data, dict) or not data.keys() <= _CONDITIONS:
        return handler(data)
    key = tuple(data.items())
    if not all(value is None or value is True or value is False for _, value in key):
        return handler(data)
    shared = _SHARED_CONDITIONS.get(key)
    if shared is None:
        shared = _SHARED_CONDITIONS[key] = handler(data)
    return shared


class ForZone(KubeModel):
    name: str


class ForNode(KubeModel):
    name: str


class EndpointHints(KubeModel):
    for_zones: list[ForZone] = Field(default_factory=list, alias="forZones")
    for_nodes: list[ForNode] = Field(default_factory=list, alias="forNodes")


class SliceEndpoint(KubeModel):
    addresses: list[str]
    conditions: EndpointConditions = Field(default_factory=lambda: _NO_CONDITIONS)
    hostname: str | None = None
    node_name: str | None = Field(None, alias="nodeName")
    zone: str | None = None
    hints: EndpointHints | None = None

    @field_validator("conditions", mode="wrap")
    @classmethod
    def _share_conditions(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _shared_conditions(data, handler)


class EndpointPort(KubeModel):
    # API defaulting: a missing name is "" and a missing protocol is TCP.
    name: str | None = ""
    protocol: str | None = "TCP"
    port: int | None = None
    app_protocol: str | None = Field(None, alias="appProtocol")


class EndpointSlice(CanonicalObject):
    KIND: ClassVar[str] = "EndpointSlice"
    API_VERSION: ClassVar[str] = "discovery.k8s.io/v1"

    address_type: str = Field(alias="addressType")
    endpoints: list[SliceEndpoint] | None = None
    ports: list[EndpointPort] | None = None

    def _canonical(self) -> EndpointSlice:
        """This slice with its legacy endpoint addresses in canonical form (itself when it has
        none). An FQDN slice's addresses are names, not addresses: left as they are."""
        endpoints = self.endpoints
        if (
            not endpoints
            or self.address_type == "FQDN"
            or not might_be_legacy([a for ep in endpoints for a in ep.addresses])
        ):
            return self
        read = LegacyReader()
        new_endpoints = [
            ep.model_copy(
                update={
                    "addresses": [
                        read.ip(f"endpoints[{i}].addresses[{j}]", a) for j, a in enumerate(ep.addresses)
                    ]
                }
            )
            for i, ep in enumerate(endpoints)
        ]
        if not read.found:
            return self
        canonical = self.model_copy(update={"endpoints": new_endpoints})
        canonical._legacy = tuple(read.found)
        return canonical

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


class SliceEndpointV1Beta1(SliceEndpoint):
    """A discovery.k8s.io/v1beta1 endpoint as Kubernetes converts it to v1
    (pkg/apis/discovery/v1beta1/conversion.go): its zone is its topology's zone label, its node
    the topology's hostname label unless nodeName is set; v1beta1 has no `zone` and no node hints
    (those keys, present, are unknown fields: ignored)."""

    topology: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _as_v1(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the type error is reported as for v1
        converted = {k: v for k, v in data.items() if k not in ("zone", "deprecatedTopology")}
        hints = data.get("hints")
        if isinstance(hints, dict):
            converted["hints"] = {k: v for k, v in hints.items() if k != "forNodes"}
        topology = data.get("topology")
        if isinstance(topology, dict):
            # A label that is not a string is reported at `topology`, not here as well.
            zone = topology.get(ZONE_LABEL)
            if isinstance(zone, str):
                converted["zone"] = zone
            node = topology.get(HOSTNAME_LABEL)
            if isinstance(node, str) and data.get("nodeName") is None:
                converted["nodeName"] = node
        return converted


class EndpointSliceV1Beta1(EndpointSlice):
    """discovery.k8s.io/v1beta1 (served until Kubernetes 1.25; old clusters' exports still carry
    it): validated as v1 is, read as v1 (an EndpointSlice to everything downstream)."""

    API_VERSION: ClassVar[str] = "discovery.k8s.io/v1beta1"

    endpoints: list[SliceEndpointV1Beta1] | None = None  # type: ignore[assignment]
