"""networking.k8s.io/v1 ServiceCIDR: the ranges the API server allocates ClusterIPs from.

kube-proxy's nftables mode reads them (pkg/proxy/config: ServiceCIDRConfig, handed to
Proxier.OnServiceCIDRsChanged) to drop traffic to addresses in them that no Service holds.
Validated as the API server validates a new object (pkg/apis/networking/validation,
ValidateServiceCIDR): a DNS-1123 subdomain name, one or two CIDRs, two only when one of each
family, each valid, strict and canonical (apimachinery/pkg/api/validation/ip.go, IsValidCIDR).
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from pydantic import Field

from svc2rules.addresses import strict_network
from svc2rules.model.checks import Problems, dns1123_subdomain
from svc2rules.model.meta import KubeModel, KubeObject, ObjectMeta

_MAX_CIDRS = 2


class ServiceCIDRSpec(KubeModel):
    cidrs: list[str] = Field(default_factory=list)


class ServiceCIDR(KubeObject):
    """Cluster-scoped: a namespace in its metadata is ignored, as the API server ignores it."""

    KIND: ClassVar[str] = "ServiceCIDR"
    API_VERSION: ClassVar[str] = "networking.k8s.io/v1"

    spec: ServiceCIDRSpec = Field(default_factory=ServiceCIDRSpec)

    @property
    def cidrs(self) -> tuple[str, ...]:
        """The CIDRs (valid objects only: canonical as written)."""
        return tuple(self.spec.cidrs)

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        if not metadata.name:
            problems.required("metadata.name")
        else:
            dns1123_subdomain(problems, "metadata.name", metadata.name)

    def check(self) -> Problems:
        problems = Problems()
        self.check_metadata(self.metadata, problems)
        check_cidrs(problems, self.spec.cidrs)
        return problems


class ServiceCIDRV1Beta1(ServiceCIDR):
    """The same object as served by networking.k8s.io/v1beta1 (Kubernetes 1.31-1.32)."""

    API_VERSION: ClassVar[str] = "networking.k8s.io/v1beta1"


def check_cidrs(problems: Problems, cidrs: list[str]) -> None:
    """ValidateServiceCIDR's rules for spec.cidrs, in its order and with its messages."""
    path = "spec.cidrs"
    if not cidrs:
        problems.add(path, "Required value: at least one CIDR required")
        return
    if len(cidrs) > _MAX_CIDRS:
        problems.invalid(path, cidrs, "may only hold up to 2 values")
        return
    if len(cidrs) == _MAX_CIDRS:
        versions = {_version(text) for text in cidrs}
        if None in versions or len(versions) != _MAX_CIDRS:
            problems.invalid(
                path,
                cidrs,
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            )
            return
    for i, text in enumerate(cidrs):
        problem = cidr_problem(text)
        if problem is not None:
            problems.invalid(f"{path}[{i}]", text, problem)


def cidr_problem(text: str) -> str | None:
    """Why apimachinery's IsValidCIDR refuses `text` (None: valid and canonical)."""
    address, _, prefix = text.partition("/")
    if (len(prefix) > 1 and prefix.startswith("0")) or _leading_zero_octet(address):
        # Go's sloppy parser reads these (as decimal); the strict check names the zeros.
        sloppy = ".".join(str(int(o)) if o.isdigit() else o for o in address.split("."))
        if _version(f"{sloppy}/{prefix}") is not None:
            return "must not have leading 0s in IP or prefix length"
    try:
        network = strict_network(text)
    except ValueError:
        return "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        return "must not have an IPv4-mapped IPv6 address"
    if network.network_address != ipaddress.ip_address(address):
        return "must not have bits set beyond the prefix length"
    if str(network) != text:
        return f'must be in canonical form ("{network}")'
    return None


def _leading_zero_octet(address: str) -> bool:
    if ":" in address:
        return False
    return any(len(octet) > 1 and octet.startswith("0") for octet in address.split("."))


def _version(text: str) -> int | None:
    try:
        return strict_network(text).version
    except ValueError:
        return None
