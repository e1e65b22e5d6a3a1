"""Where the input's own EndpointSlices differ from what its Pods imply (`endpoints --compare`).

For every Service the EndpointSlice controller manages (a selector, not ExternalName), the
endpoints of its slices in the input (those the controller manages, or that say nothing of who
does) are compared with the ones derived from the input's Pods and Nodes (resolve.derive), as the
proxy reads both (resolve.endpoints.normalize_slice): per address type and address, the ports of
its slice, the conditions, node, zone, hostname and hints. An endpoint only the Pods imply is
missing from the input; one only the input has is stale; one both have but read differently has
changed. The endpoints of a Service with no slice in the input are all missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from svc2rules.family import IPFamily
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.service import Service
from svc2rules.resolve.derive import CONTROLLER_NAME, MANAGED_BY_LABEL, derivable, derive
from svc2rules.resolve.endpoints import NormalizedSlice, SliceEndpointView, normalize_slice

# What the proxy reads of an endpoint besides its address: the ports of its slice and the rest.
_Reading = tuple[tuple[tuple[str, str, int], ...], tuple[Any, ...]]
_FIELDS = ("ready", "serving", "terminating", "nodeName", "zone", "hostname", "forZones", "forNodes")


@dataclass(frozen=True, slots=True)
class Difference:
    service: str  # namespace/name
    family: IPFamily
    address: str
    kind: str  # missing | stale | changed
    detail: str

    def __str__(self) -> str:
        return f"{self.service}: {self.family.value} endpoint {self.address}: {self.kind}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {
            "service": self.service,
            "addressType": self.family.value,
            "address": self.address,
            "difference": self.kind,
            "detail": self.detail,
        }


def compare(objects: Iterable[KubeObject]) -> list[Difference]:
    """Every difference, by Service, address type and address."""
    services: list[Service] = []
    slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    pods: list[Pod] = []
    nodes: dict[str, Node] = {}
    for obj in objects:
        if isinstance(obj, Service):
            services.append(obj)
        elif isinstance(obj, EndpointSlice) and obj.service_name:
            if obj.metadata.labels.get(MANAGED_BY_LABEL, CONTROLLER_NAME) == CONTROLLER_NAME:
                slices[(obj.namespace, obj.service_name)].append(obj)
        elif isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, Node):
            nodes.setdefault(obj.name, obj)
    out: list[Difference] = []
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        if not derivable(service):
            continue
        name = f"{service.namespace}/{service.name}"
        derived = derive(service, pods, nodes or None)
        implied = _readings(sl.normalized() for sl in derived.slices)
        pod_of = {(sl.family, ep.addresses[0]): ep.pod for sl in derived.slices for ep in sl.endpoints}
        given = _readings(
            n for n in (normalize_slice(sl) for sl in slices.get((service.namespace, service.name), ())) if n
        )
        for key in sorted(implied.keys() | given.keys()):
            family, address = key
            want, have = implied.get(key, []), given.get(key, [])
            if want == have:
                continue
            pod = pod_of.get(key)
            if not have:
                detail = f"the input has no slice with it; its Pods imply it ({_describe(want[0], pod)})"
                out.append(Difference(name, family, address, "missing", detail))
            elif not want:
                detail = f"no Pod implies it (the input has {_describe(have[0], None)})"
                out.append(Difference(name, family, address, "stale", detail))
            else:
                detail = _changes(have, want)
                out.append(Difference(name, family, address, "changed", f"{detail} (pod {pod})"))
    return out


def _readings(slices: Iterable[NormalizedSlice]) -> dict[tuple[IPFamily, str], list[_Reading]]:
    out: dict[tuple[IPFamily, str], list[_Reading]] = defaultdict(list)
    for sl in slices:
        ports = tuple(sorted((name, protocol.value, port) for name, protocol, port in sl.ports))
        for view in sl.endpoints:
            out[(sl.family, view.ip)].append((ports, _fields(view)))
    for readings in out.values():
        readings.sort()
    return dict(out)


def _fields(view: SliceEndpointView) -> tuple[Any, ...]:
    return (
        view.ready,
        view.serving,
        view.terminating,
        view.node_name,
        view.zone,
        view.hostname,
        view.zone_hints,
        view.node_hints,
    )


def _describe(reading: _Reading, pod: str | None) -> str:
    ports, fields = reading
    text = ", ".join(f"{k} {_value(v)}" for k, v in zip(_FIELDS, fields, strict=True) if v not in (None, ()))
    port_text = (
        ", ".join(f"{name or '(unnamed)'} {port}/{protocol}" for name, protocol, port in ports) or "no ports"
    )
    return (f"pod {pod}, " if pod else "") + f"{text}; ports {port_text}"


def _changes(have: Sequence[_Reading], want: Sequence[_Reading]) -> str:
    """What differs between the input's reading and the Pods' (the first of each)."""
    (have_ports, have_fields), (want_ports, want_fields) = have[0], want[0]
    parts = [
        f"{k} {_value(h)} in the input, {_value(w)} from its Pods"
        for k, h, w in zip(_FIELDS, have_fields, want_fields, strict=True)
        if h != w
    ]
    if have_ports != want_ports:
        parts.append(f"ports {_ports(have_ports)} in the input, {_ports(want_ports)} from its Pods")
    if len(have) != len(want):
        parts.append(f"{len(have)} endpoint(s) with this address in the input, {len(want)} from its Pods")
    return "; ".join(parts) or "listed differently"


def _ports(ports: tuple[tuple[str, str, int], ...]) -> str:
    return ",".join(f"{name or '(unnamed)'}:{port}/{protocol}" for name, protocol, port in ports) or "none"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return "none" if value is None else str(value)
