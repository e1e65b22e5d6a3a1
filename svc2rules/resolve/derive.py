"""Pods (and Nodes) -> the EndpointSlices the EndpointSlice controller would write for a Service.

Follows kube-controller-manager's EndpointSlice controller: `syncService`
(pkg/controller/endpointslice/endpointslice_controller.go) and the shared reconciler
(staging/src/k8s.io/endpointslice: `Reconciler.reconcileByAddressType`, `podToEndpoint`,
`getEndpointPorts`, `getEndpointAddresses`, `getAddressTypesForService`, `FindPort`,
`setEndpointSliceLabels`; util `ShouldPodBeInEndpoints`, `ShouldSetHostname`, `IsPodReady`), as
the controller writes them from scratch (no existing slices to update):

* only a Service with a selector that is not ExternalName gets slices; the Pods of its namespace
  whose labels include every selector pair are its candidates;
* a Pod in a terminal phase (Failed, Succeeded) or without an IP is left out; a terminating Pod
  stays, `terminating: true`;
* a Pod whose Node is not in a known Node list is left out unless `publishNotReadyAddresses`
  (`nodes=None`: nothing is known of Nodes, no Pod is left out for its node, no zone);
* serving = the Pod's Ready condition is True; ready = publishNotReadyAddresses or (serving and
  not terminating);
* one slice group per address type the Service supports (`spec.ipFamilies`, else the family of
  its ClusterIP, else both), each endpoint with the Pod's addresses of that family (a Pod without
  one is left out of that group);
* ports resolved per Pod (`FindPort`: a number as is, a name looked up in the containers' and
  sidecars' ports with the Service port's protocol; a port that does not resolve is left out
  of that Pod's set); Pods with different sets get different slices;
* at most 100 endpoints per slice (the controller's default --max-endpoints-per-slice), and one
  placeholder slice (no ports, no endpoints) for an address type with no endpoint at all;
* hostname when the Pod's hostname is set and its subdomain is the Service's name; nodeName;
  zone from the Node's `topology.kubernetes.io/zone` label; hints (resolve.hints).

What the controller leaves to chance is fixed here: endpoints are ordered by Pod name and cut
into slices in that order, and a slice's name is the controller's `generateName` prefix
(`<service>-`) plus five characters of the controller's alphabet taken from a hash of the
Service, the address type, the port set and the slice's number (the controller's are random).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from svc2rules.addresses import canonical_ip
from svc2rules.family import IPFamily
from svc2rules.ir import Protocol
from svc2rules.model.endpointslice import HEADLESS_LABEL, SERVICE_NAME_LABEL
from svc2rules.model.node import Node
from svc2rules.model.pod import TERMINAL_PHASES, Container, Pod
from svc2rules.model.service import Service, ServicePortSpec
from svc2rules.resolve.endpoints import NormalizedSlice, SliceEndpointView
from svc2rules.resolve.hints import EndpointHints, hints_for

# A port set as NewPortMapKey tells them apart (their order does not matter).
_PortSetKey = tuple[tuple[str, str, int, str], ...]
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager --max-endpoints-per-slice default
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
# apimachinery's utilrand alphabet (no vowels, no confusable digits): what generateName appends.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_NAME_SUFFIX_LENGTH = 5


# Named tuples, not dataclasses: 100,000 Pods make as many endpoints, and a frozen dataclass
# costs several times a tuple to build.
class DerivedPort(NamedTuple):
    name: str
    protocol: Protocol
    port: int
    app_protocol: str | None = None

    def sort_key(self) -> tuple[str, str, int, str]:
        return (self.name, self.protocol.value, self.port, self.app_protocol or "")


class DerivedEndpoint(NamedTuple):
    """One Pod's endpoint in one slice."""

    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool
    pod: str  # the Pod's name (targetRef; same namespace as the slice)
    pod_uid: str | None = None
    node_name: str | None = None
    zone: str | None = None
    hostname: str | None = None
    hints: EndpointHints | None = None


@dataclass(frozen=True, slots=True)
class DerivedSlice:
    """One EndpointSlice the controller would write."""

    namespace: str
    service: str
    name: str
    family: IPFamily
    ports: tuple[DerivedPort, ...]
    endpoints: tuple[DerivedEndpoint, ...]
    headless: bool
    labels: tuple[tuple[str, str], ...] = ()  # the Service's, reserved ones left out

    def normalized(self) -> NormalizedSlice:
        """What the proxy reads of it: resolve.endpoints.normalize_slice of its manifest."""
        views = tuple(
            SliceEndpointView(
                ip=ep.addresses[0],
                ready=ep.ready,
                serving=ep.serving,
                terminating=ep.terminating,
                node_name=ep.node_name,
                zone=ep.zone,
                zone_hints=ep.hints.for_zones if ep.hints else (),
                node_hints=ep.hints.for_nodes if ep.hints else (),
                hostname=ep.hostname,
            )
            for ep in self.endpoints
        )
        ports = tuple((p.name, p.protocol, p.port) for p in self.ports)
        return NormalizedSlice(
            self.namespace, self.service, self.name, self.family, ports, views, self.headless
        )

    def manifest(self) -> dict[str, Any]:
        """The slice as the API server would return it (discovery.k8s.io/v1)."""
        labels = dict(self.labels)
        if self.headless:
            labels[HEADLESS_LABEL] = ""
        labels[SERVICE_NAME_LABEL] = self.service
        labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
        out: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.name,
                "generateName": slice_prefix(self.service),
                "namespace": self.namespace,
                "labels": dict(sorted(labels.items())),
            },
            "addressType": self.family.value,
            "endpoints": [_endpoint_manifest(ep, self.namespace) for ep in self.endpoints],
        }
        if self.ports:
            out["ports"] = [_port_manifest(p) for p in self.ports]
        return out


@dataclass(frozen=True, slots=True)
class PodVerdict:
    """Why a candidate Pod is or is not an endpoint of a Service (for `explain --service`)."""

    pod: Pod
    excluded: str | None  # None: an endpoint (of at least one address type)
    ports: tuple[DerivedPort, ...] = ()
    missing_ports: tuple[str, ...] = ()  # Service port names whose targetPort the Pod lacks


@dataclass
class Derivation:
    """The slices of one Service and the verdict on each candidate Pod."""

    slices: list[DerivedSlice] = field(default_factory=list)
    verdicts: list[PodVerdict] = field(default_factory=list)


def derivable(service: Service) -> bool:
    """Does the controller manage this Service's slices (syncService)? A selector, not
    ExternalName. `selector: {}` is no selector: the API server stores an empty map as none."""
    return bool(service.spec.selector) and service.spec.type != "ExternalName"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """labels.SelectorFromSet(selector).Matches(labels): every pair present and equal."""
    return all(labels.get(key) == value for key, value in selector.items())


def derive_normalized(
    service: Service, pods: Iterable[Pod], nodes: Mapping[str, Node] | None
) -> tuple[NormalizedSlice, ...]:
    """What the proxy reads of the slices the controller writes for `service` from `pods` (any:
    the selector picks; `nodes` None: nothing is known of Nodes)."""
    return tuple(sl.normalized() for sl in derive(service, pods, nodes, verdicts=False).slices)


def derive_all(objects: Iterable[Any]) -> list[DerivedSlice]:
    """The slices the controller writes for every Service of `objects` it manages, from the
    Pods and Nodes among them, in (namespace, name) order."""
    services: list[Service] = []
    pods: list[Pod] = []
    nodes: dict[str, Node] = {}
    for obj in objects:
        if isinstance(obj, Service):
            services.append(obj)
        elif isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, Node):
            nodes.setdefault(obj.name, obj)
    by_namespace: dict[str, list[Pod]] = {}
    for pod in pods:
        by_namespace.setdefault(pod.namespace, []).append(pod)
    out: list[DerivedSlice] = []
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        out.extend(derive(service, by_namespace.get(service.namespace, ()), nodes or None).slices)
    return out


def derive(
    service: Service, pods: Iterable[Pod], nodes: Mapping[str, Node] | None, *, verdicts: bool = True
) -> Derivation:
    """Reconciler.Reconcile for a Service with no slices yet (`verdicts`: say why of each Pod)."""
    out = Derivation()
    if not derivable(service):
        return out
    selector = service.spec.selector or {}
    namespace = service.namespace
    candidates = sorted(
        (p for p in pods if p.namespace == namespace and selects(selector, p.metadata.labels)),
        key=lambda p: p.name,
    )
    publish = service.spec.publish_not_ready_addresses
    resolve_ports = _PortResolver(service)
    # Per Pod, once: what does not depend on the address type.
    members: list[tuple[Pod, tuple[DerivedPort, ...], Node | None]] = []
    for pod in candidates:
        excluded = _excluded(pod)
        ports, missing = resolve_ports(pod)
        node: Node | None = None
        if excluded is None and nodes is not None:
            node = nodes.get(pod.spec.node_name)
            if node is None and not publish:
                excluded = f"its Node {pod.spec.node_name or '(none)'} is not among the input's Nodes"
        if verdicts:
            out.verdicts.append(PodVerdict(pod, excluded, ports, missing))
        if excluded is None:
            members.append((pod, ports, node))
    for family in address_types(service):
        out.slices.extend(_slices_of_family(service, family, members, nodes))
    return out


def _excluded(pod: Pod) -> str | None:
    """ShouldPodBeInEndpoints(pod, includeTerminating=true), as a reason."""
    status = pod.status
    if status.phase in TERMINAL_PHASES:
        return f"its phase is {status.phase}"
    if not status.pod_ip and not status.pod_ips:
        return "it has no IP yet"
    return None


def address_types(service: Service) -> tuple[IPFamily, ...]:
    """getAddressTypesForService: spec.ipFamilies, else the ClusterIP's family, else both."""
    families = {IPFamily(f) for f in service.spec.ip_families if f in IPFamily.__members__}
    if families:
        return tuple(sorted(families))
    cluster_ip = _cluster_ip(service)
    if cluster_ip and cluster_ip != "None":
        return (IPFamily.of(cluster_ip),)
    return (IPFamily.IPv4, IPFamily.IPv6)


def _cluster_ip(service: Service) -> str:
    """spec.clusterIP as the API server stores it (clusterIPs[0] when only that is given)."""
    spec = service.spec
    return spec.cluster_ip or (spec.cluster_ips[0] if spec.cluster_ips else "")


def service_ip_set(service: Service) -> bool:
    """isServiceIPSet: slices of a Service without one are labelled headless."""
    cluster_ip = _cluster_ip(service)
    return cluster_ip not in ("", "None")


class _PortResolver:
    """getEndpointPorts for the Pods of one Service: the Service ports a Pod resolves, and the
    names of those it does not. A numeric target port resolves alike for every Pod, so only
    named ones are looked up per Pod."""

    def __init__(self, service: Service) -> None:
        self.ports = service.spec.ports
        self.fixed: list[DerivedPort | None] = []
        for sp in self.ports:
            target = target_port(sp)
            self.fixed.append(
                DerivedPort(sp.name, _PROTOCOLS[sp.protocol], target, sp.app_protocol)
                if isinstance(target, int)
                else None
            )
        self.all_fixed = tuple(p for p in self.fixed if p is not None)
        self.every_port_fixed = len(self.all_fixed) == len(self.ports)

    def __call__(self, pod: Pod) -> tuple[tuple[DerivedPort, ...], tuple[str, ...]]:
        if self.every_port_fixed:
            return self.all_fixed, ()
        ports: list[DerivedPort] = []
        missing: list[str] = []
        for sp, fixed in zip(self.ports, self.fixed, strict=True):
            if fixed is not None:
                ports.append(fixed)
                continue
            number = find_port(pod, sp)
            if number is None:
                missing.append(sp.name)
            else:
                ports.append(DerivedPort(sp.name, _PROTOCOLS[sp.protocol], number, sp.app_protocol))
        return tuple(ports), tuple(missing)


_PROTOCOLS = {p.value: p for p in Protocol}


def target_port(sp: ServicePortSpec) -> int | str:
    """The targetPort as defaulted (SetDefaults_Service: unset, 0 or "" is `port`)."""
    target = sp.target_port
    if target is None or target == 0 or target == "":
        return sp.port
    assert isinstance(target, int | str)
    return target


def find_port(pod: Pod, sp: ServicePortSpec) -> int | None:
    """FindPort (pkg/api/v1/pod/util.go): a number as is; a name looked up in the containers'
    ports, then in the sidecars' (init containers with restartPolicy Always), with the Service
    port's protocol. None when no container declares it."""
    target = target_port(sp)
    if isinstance(target, int):
        return target
    for container in _port_holders(pod):
        for port in container.ports:
            if port.name == target and port.protocol == sp.protocol:
                return port.container_port
    return None


def _port_holders(pod: Pod) -> Iterable[Container]:
    yield from pod.spec.containers
    yield from (c for c in pod.spec.init_containers if c.restart_policy == "Always")


def endpoint_addresses(pod: Pod, family: IPFamily) -> tuple[str, ...]:
    """getEndpointAddresses: the Pod's IPs of this family, re-spelled canonically (as Go's
    ParseIPSloppy + String: an IPv4-mapped IPv6 address is IPv4)."""
    out = []
    for ip in pod.ips:
        if ":" not in ip:  # validated strictly: already IPv4 as Go spells it
            if family is IPFamily.IPv4:
                out.append(ip)
            continue
        parsed = _canonical(ip)
        if parsed is not None and parsed[0] == family:
            out.append(parsed[1])
    return tuple(out)


def _canonical(ip: str) -> tuple[IPFamily, str] | None:
    parsed = canonical_ip(ip)
    if (
        parsed is not None
        and parsed[0] == IPFamily.IPv6
        and parsed[1].startswith("::ffff:")
        and "." in parsed[1]
    ):
        return IPFamily.IPv4, parsed[1].removeprefix("::ffff:")
    return parsed


def should_set_hostname(pod: Pod, service: Service) -> bool:
    """ShouldSetHostname: the Pod names a hostname and the Service as its subdomain."""
    return (
        bool(pod.spec.hostname) and pod.spec.subdomain == service.name and pod.namespace == service.namespace
    )


def pod_ready(pod: Pod) -> bool:
    """IsPodReady: the Pod's (first) Ready condition is True."""
    for condition in pod.status.conditions:
        if condition.type == "Ready":
            return condition.status == "True"
    return False


def pod_to_endpoint(
    pod: Pod, node: Node | None, service: Service, addresses: tuple[str, ...]
) -> DerivedEndpoint:
    """podToEndpoint (hints are the reconciler's business: resolve.hints)."""
    serving = pod_ready(pod)
    metadata, spec = pod.metadata, pod.spec
    terminating = metadata.deletion_timestamp is not None
    ready = service.spec.publish_not_ready_addresses or (serving and not terminating)
    return DerivedEndpoint(
        addresses,
        ready,
        serving,
        terminating,
        metadata.name or "",
        metadata.uid,
        spec.node_name or None,
        node.zone if node is not None else None,
        spec.hostname if spec.hostname and should_set_hostname(pod, service) else None,
    )


def _slices_of_family(
    service: Service,
    family: IPFamily,
    members: Sequence[tuple[Pod, tuple[DerivedPort, ...], Node | None]],
    nodes: Mapping[str, Node] | None,
) -> list[DerivedSlice]:
    """reconcileByAddressType with no existing slices: the desired endpoints grouped by port set
    (NewPortMapKey: the set, not its order), cut into slices, or one placeholder."""
    groups: dict[_PortSetKey, tuple[tuple[DerivedPort, ...], list[DerivedEndpoint]]] = {}
    keys_of: dict[tuple[DerivedPort, ...], _PortSetKey] = {}  # most Pods share one port tuple
    for pod, ports, node in members:
        addresses = endpoint_addresses(pod, family)
        if not addresses:
            continue
        key = keys_of.get(ports)
        if key is None:
            key = keys_of[ports] = tuple(sorted(p.sort_key() for p in ports))
        if key not in groups:
            groups[key] = (ports, [])
        groups[key][1].append(pod_to_endpoint(pod, node, service, addresses))
    keys = sorted(groups)
    # Hints are given over all of the address type's endpoints at once (the topology
    # annotation spreads them over zones), in the order the slices list them.
    flat = [ep for key in keys for ep in groups[key][1]]
    hinted = iter(
        ep if hints is None else ep._replace(hints=hints)
        for ep, hints in zip(flat, hints_for(service, flat, nodes), strict=True)
    )
    headless = not service_ip_set(service)
    labels = tuple(sorted((k, v) for k, v in service.metadata.labels.items() if k not in _RESERVED_LABELS))
    slices = []
    for key in keys:
        ports, unhinted = groups[key]
        endpoints = [next(hinted) for _ in unhinted]
        for number, start in enumerate(range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)):
            chunk = tuple(endpoints[start : start + MAX_ENDPOINTS_PER_SLICE])
            name = slice_name(service, family, key, number)
            slices.append(
                DerivedSlice(service.namespace, service.name, name, family, ports, chunk, headless, labels)
            )
    if not slices:
        name = slice_name(service, family, None, 0)
        slices.append(DerivedSlice(service.namespace, service.name, name, family, (), (), headless, labels))
    return slices


def slice_prefix(service_name: str) -> str:
    """getEndpointSlicePrefix: `<service>-` (a Service name always leaves room for it)."""
    return f"{service_name}-"


def slice_name(service: Service, family: IPFamily, ports: object, number: int) -> str:
    """The prefix and five characters of the controller's alphabet, from a hash of what
    identifies the slice (deterministic where the controller's are random)."""
    seed = repr((service.namespace, service.name, family.value, ports, number)).encode()
    value = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "big")
    chars = []
    for _ in range(_NAME_SUFFIX_LENGTH):
        value, index = divmod(value, len(_NAME_ALPHABET))
        chars.append(_NAME_ALPHABET[index])
    return slice_prefix(service.name) + "".join(chars)


def _port_manifest(port: DerivedPort) -> dict[str, Any]:
    out: dict[str, Any] = {"name": port.name, "port": port.port, "protocol": port.protocol.value}
    if port.app_protocol is not None:
        out["appProtocol"] = port.app_protocol
    return out


def _endpoint_manifest(ep: DerivedEndpoint, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "addresses": list(ep.addresses),
        "conditions": {"ready": ep.ready, "serving": ep.serving, "terminating": ep.terminating},
    }
    if ep.hostname is not None:
        out["hostname"] = ep.hostname
    if ep.node_name is not None:
        out["nodeName"] = ep.node_name
    if ep.zone is not None:
        out["zone"] = ep.zone
    if ep.hints is not None:
        hints: dict[str, Any] = {}
        if ep.hints.for_zones:
            hints["forZones"] = [{"name": z} for z in ep.hints.for_zones]
        if ep.hints.for_nodes:
            hints["forNodes"] = [{"name": n} for n in ep.hints.for_nodes]
        out["hints"] = hints
    target: dict[str, Any] = {"kind": "Pod", "namespace": namespace, "name": ep.pod}
    if ep.pod_uid:
        target["uid"] = ep.pod_uid
    out["targetRef"] = target
    return out
