"""Legacy addresses: values with leading zeros that objects stored before the API server's
strict IP validation still carry, read as kube-proxy reads them (addresses.legacy_ip /
legacy_cidr: k8s.io/utils/net ParseIPSloppy / ParseCIDRSloppy) and kept in canonical form.

Only the fields kube-proxy (or the EndpointSlice mirroring controller, for Endpoints) parses
sloppily are read so: a Service's clusterIP(s), externalIPs, loadBalancerSourceRanges and
status.loadBalancer.ingress[].ip (pkg/proxy/serviceport.go newBaseServiceInfo,
pkg/proxy/util MapIPsByIPFamily / MapCIDRsByIPFamily), an EndpointSlice's endpoint addresses
(pkg/proxy/endpointslicecache.go, which takes their family with ParseIPSloppy) and an Endpoints'
subset addresses (pkg/controller/endpointslicemirroring/utils.go addressToEndpoint: "We parse
and restringify the Endpoints IP in case it is in an irregular format"). Everything else
(Pods, Nodes, flags, config) stays strict.

The models canonicalize while they are built (a model validator), so every path that builds a
model (validation, and the compile memo's models of objects it vouched for) reads the same
values; the model keeps what it rewrote, and validation reports it as one warning per object.
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.addresses import any_leading_zero, has_leading_zero, legacy_cidr, legacy_ip


@dataclass(frozen=True, slots=True)
class LegacyValue:
    """One value read the legacy way: where, as written, and as it is read."""

    path: str
    written: str
    canonical: str


class LegacyReader:
    """Reads the values of one object, collecting those only the legacy parsers accept."""

    def __init__(self) -> None:
        self.found: list[LegacyValue] = []

    def ip(self, path: str, value: str) -> str:
        """The address as kube-proxy reads it (unchanged unless it is a legacy one)."""
        if not has_leading_zero(value):
            return value
        canonical = legacy_ip(value)
        if canonical is None:
            return value
        self.found.append(LegacyValue(path, value, canonical))
        return canonical

    def cidr(self, path: str, value: str) -> str:
        """The CIDR as kube-proxy reads it (space padding trimmed first, as
        MapCIDRsByIPFamily does; unchanged unless it is a legacy one)."""
        trimmed = value.strip()
        if not has_leading_zero(trimmed):
            return value
        canonical = legacy_cidr(trimmed)
        if canonical is None:
            return value
        self.found.append(LegacyValue(path, value, canonical))
        return canonical


def might_be_legacy(values: list[str]) -> bool:
    """A quick test of a list of values: False means none is a legacy one. Run on every
    address of the input, so one regex pass over them all (a value with a space in it is
    never a valid one; at worst it makes the test say maybe)."""
    return any_leading_zero(values)


def legacy_message(found: tuple[LegacyValue, ...]) -> tuple[str, str]:
    """(field, message) of the one warning an object with legacy values gets."""
    fields = ", ".join(v.path for v in found)
    values = ", ".join(f'"{v.written}" as {v.canonical}' for v in found)
    return fields, (
        f"legacy value{'s' if len(found) > 1 else ''} with leading zeros read as kube-proxy reads "
        f"them (decimal, not octal): {values}"
    )
