"""core/v1 Endpoints (legacy), read the way the EndpointSlice mirroring controller reads it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from svc2rules.model.checks import Problems, dns1035_label, dns1123_label, dns1123_subdomain, ip_address
from svc2rules.model.checks import port_number as check_port
from svc2rules.model.legacy import LegacyReader, might_be_legacy
from svc2rules.model.meta import CanonicalObject, KubeModel, ObjectMeta
from svc2rules.model.service import PROTOCOLS

SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"


class EndpointAddress(KubeModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = Field(None, alias="nodeName")


class EndpointsPort(KubeModel):
    name: str = ""
    port: int
    protocol: str = "TCP"
    app_protocol: str | None = Field(None, alias="appProtocol")


class EndpointSubset(KubeModel):
    addresses: list[EndpointAddress] = Field(default_factory=list)
    not_ready_addresses: list[EndpointAddress] = Field(default_factory=list, alias="notReadyAddresses")
    ports: list[EndpointsPort] = Field(default_factory=list)


class Endpoints(CanonicalObject):
    KIND: ClassVar[str] = "Endpoints"
    API_VERSION: ClassVar[str] = "v1"

    subsets: list[EndpointSubset] = Field(default_factory=list)

    def _canonical(self) -> Endpoints:
        """These Endpoints with their legacy addresses in canonical form (itself when they have
        none), as the mirroring controller restringifies them (addressToEndpoint)."""
        if not might_be_legacy(
            [a.ip for subset in self.subsets for a in (*subset.addresses, *subset.not_ready_addresses)]
        ):
            return self
        read = LegacyReader()

        def canonical(path: str, addresses: list[EndpointAddress]) -> list[EndpointAddress]:
            return [
                a.model_copy(update={"ip": read.ip(f"{path}[{j}].ip", a.ip)}) for j, a in enumerate(addresses)
            ]

        subsets = [
            subset.model_copy(
                update={
                    "addresses": canonical(f"subsets[{i}].addresses", subset.addresses),
                    "not_ready_addresses": canonical(
                        f"subsets[{i}].notReadyAddresses", subset.not_ready_addresses
                    ),
                }
            )
            for i, subset in enumerate(self.subsets)
        ]
        if not read.found:
            return self
        out = self.model_copy(update={"subsets": subsets})
        out._legacy = tuple(read.found)
        return out

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        super().check_metadata(metadata, problems)
        if metadata.name:
            # Endpoints share their Service's name.
            dns1035_label(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = super().check()
        for i, subset in enumerate(self.subsets):
            base = f"subsets[{i}]"
            for field, addresses in (
                ("addresses", subset.addresses),
                ("notReadyAddresses", subset.not_ready_addresses),
            ):
                for j, address in enumerate(addresses):
                    path = f"{base}.{field}[{j}]"
                    ip_address(problems, f"{path}.ip", address.ip)
                    if address.hostname is not None:
                        dns1123_label(problems, f"{path}.hostname", address.hostname)
                    if address.node_name is not None:
                        dns1123_subdomain(problems, f"{path}.nodeName", address.node_name)
            names: set[str] = set()
            for j, port in enumerate(subset.ports):
                path = f"{base}.ports[{j}]"
                if len(subset.ports) > 1 and not port.name:
                    problems.required(f"{path}.name")
                if port.name:
                    dns1123_label(problems, f"{path}.name", port.name)
                    if port.name in names:
                        problems.duplicate(f"{path}.name", port.name)
                    names.add(port.name)
                check_port(problems, f"{path}.port", port.port)
                if port.protocol not in PROTOCOLS:
                    problems.unsupported(f"{path}.protocol", port.protocol, PROTOCOLS)
        return problems
