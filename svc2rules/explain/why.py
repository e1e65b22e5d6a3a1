"""Why a Service has no (ready) endpoints: what its selector matches and what the controller
makes of each Pod it matches (resolve.derive), or what the input's own slices hold.

For a selector that matches no Pod: the Pods of the namespace that come closest (labels that
differ in one key or value, or in case only) and the Pods of other namespaces whose labels match.
For matching Pods: which are endpoints and ready, which are not Ready (and which conditions
say so), terminating, left out (no IP yet, Failed or Succeeded, on a Node the input does not
have) or lack the named target port of a Service port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.service import Service
from svc2rules.resolve.derive import PodVerdict, derivable, derive, pod_ready, selects, target_port
from svc2rules.resolve.endpoints import NormalizedSlice, mirror_endpoints, normalize_slice

_LISTED = 5  # Pods named per list


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    state: str  # ready | not-ready | terminating | left-out
    detail: str
    where: str = ""  # its addresses and Node

    def to_dict(self) -> dict[str, str]:
        return {"pod": self.name, "state": self.state, "where": self.where, "detail": self.detail}

    def line(self) -> str:
        return f"pod {self.name}" + (f" ({self.where})" if self.where else "") + f": {self.detail}"


@dataclass(frozen=True, slots=True)
class PortState:
    name: str
    protocol: str
    target: str  # the targetPort as the Service gives it (defaulted)
    endpoints: int
    ready: int
    missing: tuple[str, ...] = ()  # matching Pods that do not declare a named target port

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "targetPort": self.target,
            "endpoints": self.endpoints,
            "ready": self.ready,
            "missingIn": list(self.missing),
        }


@dataclass
class ServiceDiagnosis:
    """What `explain --service` says (to_dict is its `-o json`, with stable keys)."""

    service: str
    found: bool = True
    type: str = ""
    selector: dict[str, str] | None = None
    source: str = "none"  # EndpointSlices | Endpoints | Pods | none
    pods_in_input: int = 0
    matching: int = 0
    pods: list[PodState] = field(default_factory=list)
    closest: list[tuple[str, str]] = field(default_factory=list)  # (pod, how it differs)
    elsewhere: list[str] = field(default_factory=list)  # namespace/name
    ports: list[PortState] = field(default_factory=list)
    summary: str = ""

    def lines(self, port_name: str | None = None) -> list[str]:
        """The why, one fact a line: what a flow explain appends to its verdict."""
        out = [self.summary]
        if not self.found or (self.selector is None and self.source == "none"):
            return out
        out.append(self._source_line())
        if self.source == "Pods" or (self.source == "none" and self.selector):
            out.append(self._match_line())
        out += [f"closest: {pod}: {how}" for pod, how in self.closest]
        if self.elsewhere:
            out.append(f"in other namespaces, matching the selector: {', '.join(self.elsewhere)}")
        out += [p.line() for p in self.pods if p.state != "ready"]
        for port in self.ports:
            if port_name is not None and port.name != port_name:
                continue
            out.append(self._port_line(port))
        return out

    def _source_line(self) -> str:
        return {
            "EndpointSlices": "endpoints: from the input's EndpointSlices (the live state wins over its Pods)",
            "Endpoints": "endpoints: from the input's legacy Endpoints (the live state wins over its Pods)",
            "Pods": "endpoints: derived from the input's Pods (it has no EndpointSlice or Endpoints for it)",
            "none": "endpoints: the input has no EndpointSlice, Endpoints or matching Pod for it",
        }[self.source]

    def _match_line(self) -> str:
        namespace = self.service.split("/", 1)[0]
        if not self.pods_in_input:
            return "pods: the input has no Pods (kubectl get pods,nodes,svc -A -o yaml includes them)"
        return f"pods: {self.matching} of the Pods in namespace {namespace} match selector {_labels(self.selector or {})}"

    def _port_line(self, port: PortState) -> str:
        name = port.name or "(unnamed)"
        text = f"port {name}/{port.protocol} (targetPort {port.target}): {port.endpoints} endpoint(s), {port.ready} ready"
        if port.missing:
            text += f"; no container port {port.target}/{port.protocol} in {_some(port.missing)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "found": self.found,
            "type": self.type,
            "selector": self.selector,
            "endpointSource": self.source,
            "podsInInput": self.pods_in_input,
            "matchingPods": self.matching,
            "pods": [p.to_dict() for p in self.pods],
            "closest": [{"pod": pod, "difference": how} for pod, how in self.closest],
            "otherNamespaces": list(self.elsewhere),
            "ports": [p.to_dict() for p in self.ports],
            "summary": self.summary,
        }


def diagnose(objects: Iterable[KubeObject], namespace: str, name: str) -> ServiceDiagnosis:
    """Why the Service namespace/name has the endpoints it has, from the input's valid objects."""
    services: list[Service] = []
    slices: list[EndpointSlice] = []
    endpoints: Endpoints | None = None
    pods: list[Pod] = []
    nodes: dict[str, Node] = {}
    for obj in objects:
        if isinstance(obj, Service):
            services.append(obj)
        elif isinstance(obj, EndpointSlice):
            if obj.namespace == namespace and obj.service_name == name:
                slices.append(obj)
        elif isinstance(obj, Endpoints):
            if obj.namespace == namespace and obj.name == name and endpoints is None:
                endpoints = obj
        elif isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, Node):
            nodes.setdefault(obj.name, obj)
    out = ServiceDiagnosis(f"{namespace}/{name}", pods_in_input=len(pods))
    service = next((s for s in services if s.namespace == namespace and s.name == name), None)
    if service is None:
        out.found = False
        others = sorted(f"{s.namespace}/{s.name}" for s in services if s.name == name)
        out.summary = f"the input has no Service {namespace}/{name}" + (
            f" (a Service of that name: {', '.join(others[:_LISTED])})" if others else ""
        )
        return out
    out.type = service.spec.type
    out.selector = dict(service.spec.selector) if service.spec.selector else None
    if service.spec.type == "ExternalName":
        out.summary = f"{out.service} is an ExternalName Service: a DNS alias, it has no endpoints"
        return out
    if slices or endpoints is not None:
        out.source = "EndpointSlices" if slices else "Endpoints"
        normalized = [n for n in (normalize_slice(s) for s in slices) if n is not None]
        if not normalized and endpoints is not None:
            normalized = mirror_endpoints(endpoints, service.spec.publish_not_ready_addresses)
        out.ports = _ports_of_slices(service, normalized)
        out.summary = _summary(out)
        return out
    if not derivable(service):
        out.summary = (
            f"{out.service} has no selector: its endpoints come only from EndpointSlices (or "
            "Endpoints) made for it, and the input has none"
        )
        return out
    selector = service.spec.selector or {}
    in_namespace = [p for p in pods if p.namespace == namespace]
    derivation = derive(service, pods, nodes or None)
    out.matching = len(derivation.verdicts)
    if derivation.verdicts:
        out.source = "Pods"
        out.pods = [_pod_state(v) for v in derivation.verdicts]
        out.ports = _ports_of_derivation(service, derivation.slices, derivation.verdicts)
    else:
        out.closest = closest(selector, in_namespace)
        out.elsewhere = sorted(
            f"{p.namespace}/{p.name}"
            for p in pods
            if p.namespace != namespace and selects(selector, p.metadata.labels)
        )[:_LISTED]
    out.summary = _summary(out)
    return out


def _pod_state(verdict: PodVerdict) -> PodState:
    pod = verdict.pod
    where = ", ".join(pod.ips) + (f" on {pod.spec.node_name}" if pod.spec.node_name else "")
    if verdict.excluded is not None:
        return PodState(pod.name, "left-out", f"not an endpoint: {verdict.excluded}", where)
    serving = pod_ready(pod)
    if pod.terminating:
        detail = "terminating (deletionTimestamp set): " + (
            "still serving, used only while no endpoint is ready" if serving else "not serving"
        )
        return PodState(pod.name, "terminating", detail, where)
    if not serving:
        return PodState(pod.name, "not-ready", _not_ready(pod), where)
    return PodState(pod.name, "ready", "ready", where)


def _not_ready(pod: Pod) -> str:
    """Which conditions keep the Pod from Ready."""
    condition = pod.ready_condition()
    if condition is None:
        return "not Ready: no Ready condition yet (not started?)"
    said = []
    for c in pod.status.conditions:
        if c.status != "True" and c.type != "Ready":
            said.append(_condition(c.type, c.status, c.reason, c.message))
    said.append(_condition(condition.type, condition.status, condition.reason, condition.message))
    return "not Ready: " + "; ".join(said)


def _condition(kind: str, status: str, reason: str, message: str) -> str:
    text = f"{kind} is {status or 'unset'}"
    detail = ": ".join(part for part in (reason, message) if part)
    return f"{text} ({detail})" if detail else text


def closest(selector: Mapping[str, str], pods: Sequence[Pod]) -> list[tuple[str, str]]:
    """Pods whose labels miss the selector by one pair (a value, a missing key) or by case only,
    case-only first."""
    found: list[tuple[int, str, str]] = []
    for pod in pods:
        labels = pod.metadata.labels
        misses = [(k, v) for k, v in selector.items() if labels.get(k) != v]
        if not misses:
            continue
        folded = {k.lower(): v.lower() for k, v in labels.items()}
        if all(folded.get(k.lower()) == v.lower() for k, v in misses):
            spelled = ", ".join(_spelled(labels, k) for k, _ in misses)
            found.append(
                (0, pod.name, f"labels differ in case only ({spelled}; selector {_labels(dict(misses))})")
            )
        elif len(misses) == 1:
            key, value = misses[0]
            if key in labels:
                found.append((1, pod.name, f"label {key}={labels[key]} instead of {key}={value}"))
            else:
                found.append((2, pod.name, f"lacks label {key}={value}"))
    return [(name, how) for _, name, how in sorted(found)[:_LISTED]]


def _spelled(labels: Mapping[str, str], key: str) -> str:
    actual = next(k for k in labels if k.lower() == key.lower())
    return f"{actual}={labels[actual]}"


def _ports_of_slices(service: Service, slices: Sequence[NormalizedSlice]) -> list[PortState]:
    out = []
    for sp in service.spec.ports:
        endpoints: dict[str, bool] = {}
        for sl in slices:
            if sl.headless and not service.is_headless:
                continue
            if any(name == sp.name and protocol.value == sp.protocol for name, protocol, _ in sl.ports):
                for view in sl.endpoints:
                    endpoints[view.ip] = endpoints.get(view.ip, False) or view.ready
        out.append(
            PortState(sp.name, sp.protocol, str(target_port(sp)), len(endpoints), sum(endpoints.values()))
        )
    return out


def _ports_of_derivation(
    service: Service, slices: Sequence[Any], verdicts: Sequence[PodVerdict]
) -> list[PortState]:
    out = []
    for sp in service.spec.ports:
        endpoints: dict[str, bool] = {}
        for sl in slices:
            if any(p.name == sp.name and p.protocol.value == sp.protocol for p in sl.ports):
                for ep in sl.endpoints:
                    endpoints[ep.pod] = ep.ready
        missing = tuple(v.pod.name for v in verdicts if v.excluded is None and sp.name in v.missing_ports)
        out.append(
            PortState(
                sp.name, sp.protocol, str(target_port(sp)), len(endpoints), sum(endpoints.values()), missing
            )
        )
    return out


def _summary(d: ServiceDiagnosis) -> str:
    """The one-line answer."""
    if d.ports and all(p.ready for p in d.ports):
        return f"{d.service} has ready endpoints on every port"
    if d.source == "none":
        if not d.pods_in_input:
            return f"{d.service} has no endpoints: the input has no EndpointSlice, Endpoints or Pod for it"
        namespace = d.service.split("/", 1)[0]
        return f"{d.service} has no endpoints: no Pod in namespace {namespace} matches selector {_labels(d.selector or {})}"
    if d.source == "Pods":
        endpoints = [p for p in d.pods if p.state != "left-out"]
        if not endpoints:
            return f"{d.service} has no endpoints: none of the {d.matching} matching Pod(s) is one"
        if not d.ports:  # a headless Service without ports: DNS publishes the Pods
            ready = sum(1 for p in endpoints if p.state == "ready")
            return f"{d.service} has {len(endpoints)} endpoint(s) without ports, {ready} ready"
    empty = [p for p in d.ports if not p.endpoints]
    unready = [p for p in d.ports if p.endpoints and not p.ready]
    parts = []
    if empty:
        parts.append(f"no endpoint for port(s) {', '.join(p.name or '(unnamed)' for p in empty)}")
    if unready:
        parts.append(f"no ready endpoint for port(s) {', '.join(p.name or '(unnamed)' for p in unready)}")
    if not parts:
        return f"{d.service} has no ports"
    return f"{d.service}: " + "; ".join(parts)


def _labels(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _some(names: Sequence[str]) -> str:
    listed = ", ".join(names[:_LISTED])
    return listed + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
