"""core/v1 Node: what the EndpointSlice controller reads of one (its name, its zone label, its
readiness and allocatable CPU for topology hints) and the addresses `explain` names it by."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from svc2rules.addresses import canonical_ip
from svc2rules.model.checks import Problems, dns1123_subdomain
from svc2rules.model.meta import KubeModel, KubeObject, ObjectMeta

ZONE_LABEL = "topology.kubernetes.io/zone"
# Addresses that are IPs (Hostname and the DNS kinds are names).
_IP_ADDRESS_TYPES = ("InternalIP", "ExternalIP")


class NodeAddress(KubeModel):
    type: str
    address: str


class NodeCondition(KubeModel):
    type: str
    status: str = ""


class NodeStatus(KubeModel):
    addresses: list[NodeAddress] = Field(default_factory=list)
    conditions: list[NodeCondition] = Field(default_factory=list)
    # resource.Quantity: a string ("3800m") or a number; only cpu is read.
    allocatable: dict[str, str] = Field(default_factory=dict)
    capacity: dict[str, str] = Field(default_factory=dict)

    @field_validator("allocatable", "capacity", mode="before")
    @classmethod
    def _quantities(cls, value: object) -> object:
        # A quantity may be written as a number in YAML/JSON; the API server reads "4" and 4 alike.
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value


class Node(KubeObject):
    """Cluster-scoped: a namespace in its metadata is ignored, as the API server ignores it."""

    KIND: ClassVar[str] = "Node"
    API_VERSION: ClassVar[str] = "v1"

    status: NodeStatus = Field(default_factory=NodeStatus)

    @property
    def zone(self) -> str | None:
        """The node's `topology.kubernetes.io/zone` label, None when unset or empty."""
        return self.metadata.labels.get(ZONE_LABEL) or None

    @property
    def ready(self) -> bool:
        """The first Ready condition is True (the controller's isNodeReady)."""
        condition = next((c for c in self.status.conditions if c.type == "Ready"), None)
        return condition is not None and condition.status == "True"

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.status.addresses if a.type in _IP_ADDRESS_TYPES)

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        if not metadata.name:
            problems.required("metadata.name")
        else:
            # ValidateNodeName: a DNS-1123 subdomain. No namespace rule: Nodes have none.
            dns1123_subdomain(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = Problems()
        self.check_metadata(self.metadata, problems)
        for i, address in enumerate(self.status.addresses):
            if address.type in _IP_ADDRESS_TYPES and canonical_ip(address.address) is None:
                problems.invalid(
                    f"status.addresses[{i}].address",
                    address.address,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
        return problems
