"""core/v1 Pod: the fields the EndpointSlice controller reads, validated as the API server does.

Read as the API server has defaulted it (pkg/apis/core/v1 defaults and conversion): a container
port without a protocol is TCP, and a status with only `podIP` (or `hostIP`) has `podIPs:
[podIP]` (`hostIPs: [hostIP]`). A `podIP` that is not `podIPs[0]` is refused: the API server
never stores such a Pod (conversion makes `podIP` authoritative and drops the rest), so the input
is not what a cluster holds and guessing which one is meant would hide that.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from svc2rules.addresses import canonical_ip
from svc2rules.errors import quote_value
from svc2rules.family import IPFamily
from svc2rules.model.checks import Problems, dns1123_label, dns1123_subdomain, iana_svc_name, port_number
from svc2rules.model.meta import KubeModel, KubeObject, ObjectMeta
from svc2rules.model.service import PROTOCOLS

TERMINAL_PHASES = ("Failed", "Succeeded")
# A restartable init container (a sidecar) is the only kind an init container's
# restartPolicy may name.
SIDECAR_RESTART_POLICY = "Always"


class PodMeta(ObjectMeta):
    uid: str | None = None
    deletion_timestamp: str | None = Field(None, alias="deletionTimestamp")


class ContainerPort(KubeModel):
    name: str = ""
    container_port: int = Field(0, alias="containerPort")
    protocol: str = "TCP"
    host_port: int = Field(0, alias="hostPort")

    @field_validator("protocol")
    @classmethod
    def _defaulted(cls, value: str) -> str:
        # SetDefaults: an empty protocol is TCP, as absent.
        return value or "TCP"


class Container(KubeModel):
    name: str = ""
    ports: list[ContainerPort] = Field(default_factory=list)
    restart_policy: str | None = Field(None, alias="restartPolicy")


class PodSpec(KubeModel):
    node_name: str = Field("", alias="nodeName")
    hostname: str = ""
    subdomain: str = ""
    host_network: bool = Field(False, alias="hostNetwork")
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list, alias="initContainers")


class IPEntry(KubeModel):
    """A `podIPs` / `hostIPs` entry."""

    ip: str


class PodCondition(KubeModel):
    type: str
    status: str = ""
    reason: str = ""
    message: str = ""


class PodStatus(KubeModel):
    phase: str = ""
    pod_ip: str = Field("", alias="podIP")
    pod_ips: list[IPEntry] = Field(default_factory=list, alias="podIPs")
    host_ip: str = Field("", alias="hostIP")
    host_ips: list[IPEntry] = Field(default_factory=list, alias="hostIPs")
    conditions: list[PodCondition] = Field(default_factory=list)


class Pod(KubeObject):
    KIND: ClassVar[str] = "Pod"
    API_VERSION: ClassVar[str] = "v1"

    metadata: PodMeta = Field(default_factory=PodMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)

    # -- derived views, valid after check() found no problems -------------------------

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def terminating(self) -> bool:
        return self.metadata.deletion_timestamp is not None

    @property
    def ips(self) -> tuple[str, ...]:
        """status.podIPs as the API server stores them (`[podIP]` when only podIP is set)."""
        if self.status.pod_ips:
            return tuple(entry.ip for entry in self.status.pod_ips)
        return (self.status.pod_ip,) if self.status.pod_ip else ()

    def ready_condition(self) -> PodCondition | None:
        """The first condition of type Ready (pkg/api/v1/pod GetPodReadyCondition)."""
        return next((c for c in self.status.conditions if c.type == "Ready"), None)

    # -- validation ---------------------------------------------------------------------

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        super().check_metadata(metadata, problems)
        if metadata.name:
            # ValidatePodName: a DNS-1123 subdomain.
            dns1123_subdomain(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = super().check()
        spec = self.spec
        if spec.node_name:
            dns1123_subdomain(problems, "spec.nodeName", spec.node_name)
        if spec.hostname:
            dns1123_label(problems, "spec.hostname", spec.hostname)
        if spec.subdomain:
            dns1123_label(problems, "spec.subdomain", spec.subdomain)
        for i, container in enumerate(spec.containers):
            _check_ports(problems, f"spec.containers[{i}].ports", container.ports)
        for i, container in enumerate(spec.init_containers):
            path = f"spec.initContainers[{i}]"
            policy = container.restart_policy
            if policy is not None and policy != SIDECAR_RESTART_POLICY:
                problems.unsupported(f"{path}.restartPolicy", policy, (SIDECAR_RESTART_POLICY,))
            _check_ports(problems, f"{path}.ports", container.ports)
        _check_ips(problems, "podIP", self.status.pod_ip, self.status.pod_ips)
        _check_ips(problems, "hostIP", self.status.host_ip, self.status.host_ips)
        return problems


def _check_ports(problems: Problems, path: str, ports: list[ContainerPort]) -> None:
    """validateContainerPorts: names unique within the container. (Most ports are valid: their
    field paths are spelled only for one that is not.)"""
    names: set[str] = set()
    for j, port in enumerate(ports):
        name = port.name
        if (
            (name and (name in names or not _plain_port_name(name)))
            or not 0 < port.container_port <= _MAX_PORT
            or not 0 <= port.host_port <= _MAX_PORT
            or port.protocol not in PROTOCOLS
        ):
            _port_problems(problems, f"{path}[{j}]", port, names)
        if name:
            names.add(name)


def _plain_port_name(name: str) -> bool:
    """A port name IsValidPortName certainly accepts (anything else gets the full check)."""
    return (
        len(name) <= _MAX_PORT_NAME
        and _PORT_NAME.fullmatch(name) is not None
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )


def _port_problems(problems: Problems, at: str, port: ContainerPort, names: set[str]) -> None:
    if port.name and iana_svc_name(problems, f"{at}.name", port.name) and port.name in names:
        problems.duplicate(f"{at}.name", port.name)
    if port.container_port == 0:
        problems.required(f"{at}.containerPort")
    else:
        port_number(problems, f"{at}.containerPort", port.container_port)
    if port.host_port != 0:
        port_number(problems, f"{at}.hostPort", port.host_port)
    if port.protocol not in PROTOCOLS:
        problems.unsupported(f"{at}.protocol", port.protocol, PROTOCOLS)


def _check_ips(problems: Problems, singular: str, single: str, entries: list[IPEntry]) -> None:
    """validatePodIPs / validateHostIPs: valid addresses, at most one per family, and the
    singular field equal to the first entry (what conversion keeps them as)."""
    if len(entries) == 1 and entries[0].ip == single and canonical_ip(single) is not None:
        return  # what the API server writes: said once, in both fields
    plural = f"status.{singular}s"
    if single and canonical_ip(single) is None:
        problems.invalid(f"status.{singular}", single, _NOT_AN_IP)
        single = ""  # said once: not compared with the list
    families: list[IPFamily] = []
    for i, entry in enumerate(entries):
        parsed = canonical_ip(entry.ip)
        if parsed is None:
            problems.invalid(f"{plural}[{i}].ip", entry.ip, _NOT_AN_IP)
        else:
            families.append(parsed[0])
    if len(entries) > 1 and (len(entries) > 2 or len(set(families)) != len(entries)):
        problems.add(
            plural,
            f"Invalid value: {_listed(entries)}: may specify no more than one IP for each IP family",
        )
    if entries and single and entries[0].ip != single:
        problems.invalid(f"{plural}[0].ip", entries[0].ip, f"must be equal to `{singular}`")


_MAX_PORT = 65535
_MAX_PORT_NAME = 15
_PORT_NAME = re.compile(r"[-a-z0-9]*[a-z][-a-z0-9]*")
_NOT_AN_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _listed(entries: list[IPEntry]) -> str:
    return quote_value([{"ip": entry.ip} for entry in entries])
