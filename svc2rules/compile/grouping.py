"""Grouping the input by Service: the objects each Service's resolution reads (its members).

A Service's members are the Service, the EndpointSlices labelled for it and its legacy Endpoints;
a Service the EndpointSlice controller manages (a selector, not ExternalName) that has neither
gets instead the Pods its selector picks in its namespace, and the Nodes they run on. Its
fingerprint then changes when one of those Pods or Nodes does, and only then.

The Nodes: the controller looks a Pod's Node up in the complete Node list (a Pod on a Node that
is not in it is left out), and with no Node in the input nothing is known of Nodes. Members hold
the Nodes the Pods name when all of them are in the input; when one is not (or the Service asks
for topology hints, which weigh every Node), every Node. Either way a Node list is known to the
resolution exactly when the input has one.

What grouping reads of an object is kept in its memo identity (`grouping_key`), so a known-valid
object is grouped without being parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from svc2rules.compile.read import InputObjects
from svc2rules.errors import Diagnostic
from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import SERVICE_NAME_LABEL, EndpointSlice
from svc2rules.model.meta import KubeObject
from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.registry import ValidatedObjects
from svc2rules.model.service import Service
from svc2rules.model.servicecidr import ServiceCIDR
from svc2rules.resolve.derive import derivable, derive_normalized
from svc2rules.resolve.endpoints import NormalizedSlice, ServiceRef
from svc2rules.resolve.hints import hints_enabled
from svc2rules.resolve.plan import ServiceObjects

_SERVICE, _SLICE, _POD, _NODE = Service.KIND, EndpointSlice.KIND, Pod.KIND, Node.KIND
_SERVICE_CIDR = ServiceCIDR.KIND
_NAMED = 3  # how many Service names a summary line lists

# A selector as grouping reads it: its pairs, and whether the Service's topology annotation
# asks for hints (they weigh every Node).
Selector = tuple[tuple[tuple[str, str], ...], bool]


def grouping_key(model: KubeObject) -> str:
    """What grouping reads of a valid object beyond its kind, namespace and name: an
    EndpointSlice's Service-name label, the selector of a Service the controller manages, a
    Pod's labels and Node; "" for everything else."""
    if isinstance(model, EndpointSlice):
        return model.service_name or ""
    if isinstance(model, Service):
        if not derivable(model):
            return ""
        selector = sorted((model.spec.selector or {}).items())
        return json.dumps([selector, hints_enabled(model.metadata.annotations)])
    if isinstance(model, Pod):
        return json.dumps([sorted(model.metadata.labels.items()), model.spec.node_name])
    return ""


def _selector_of_key(key: str) -> Selector | None:
    if not key:
        return None
    pairs, auto = json.loads(key)
    return tuple((k, v) for k, v in pairs), bool(auto)


def _selector_of(service: Service) -> Selector | None:
    if not derivable(service):
        return None
    return tuple((service.spec.selector or {}).items()), hints_enabled(service.metadata.annotations)


@dataclass
class Groups:
    """The members of each Service (input indices, the Service first) and what the summary
    lines say."""

    members: dict[ServiceRef, tuple[str, list[int]]] = field(default_factory=dict)
    derived: list[ServiceRef] = field(default_factory=list)  # endpoints from Pods
    unserved: list[ServiceRef] = field(default_factory=list)  # a selector, and nothing to go by


@dataclass
class _Pods:
    """The Pods of the input by namespace, and per namespace by label pair."""

    labels: dict[int, Mapping[str, str]] = field(default_factory=dict)
    node: dict[int, str] = field(default_factory=dict)
    by_pair: dict[str, dict[tuple[str, str], list[int]]] = field(default_factory=dict)

    def add(self, index: int, namespace: str, labels: Mapping[str, str], node: str) -> None:
        self.labels[index] = labels
        self.node[index] = node
        pairs = self.by_pair.setdefault(namespace, {})
        for pair in labels.items():
            pairs.setdefault(pair, []).append(index)

    def matching(self, namespace: str, selector: Sequence[tuple[str, str]]) -> list[int]:
        """The Pods of `namespace` whose labels include every pair: those listed under the
        rarest pair, checked for the others."""
        pairs = self.by_pair.get(namespace)
        if not pairs:
            return []
        lists = [pairs.get(pair, []) for pair in selector]
        rarest = min(lists, key=len)
        labels = self.labels
        return [i for i in rarest if all(labels[i].get(k) == v for k, v in selector)]


def group_members(read: InputObjects, validated: ValidatedObjects) -> Groups:
    """The members of every Service in the input (Services absent from it have no entry: their
    slices and Endpoints change nothing)."""
    services: dict[ServiceRef, int] = {}
    # A Service's model, or (known valid to the memo) its grouping key: its selector is read
    # only when the input has Pods to match.
    selectors: dict[ServiceRef, Service | str] = {}
    others: dict[ServiceRef, list[int]] = {}
    pods = _Pods()
    nodes: dict[str, int] = {}
    for index, model, (kind, namespace, name) in validated.accepted:
        # The Service an object belongs to, as resolve.plan.service_ref_of reads it from the
        # model (an EndpointSlice by its service-name label). A model is None for an object
        # known valid to the memo: its identity says what grouping needs.
        if kind == _SERVICE:
            services[(namespace, name)] = index
            selectors[(namespace, name)] = model if isinstance(model, Service) else read.identities[index][4]
            continue
        if kind == _POD:
            if isinstance(model, Pod):
                pods.add(index, namespace, model.metadata.labels, model.spec.node_name)
            else:
                pairs, node = json.loads(read.identities[index][4])
                pods.add(index, namespace, dict(pairs), node)
            continue
        if kind == _NODE:
            nodes.setdefault(name, index)
            continue
        if kind == _SERVICE_CIDR:
            continue  # cluster-wide: the plan's service CIDRs, no Service's member
        if kind == _SLICE:
            if isinstance(model, EndpointSlice):
                label = model.service_name
            else:
                label = (read.raw[index].data["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
            if not label:
                continue
            name = label
        others.setdefault((namespace, name), []).append(index)
    sources = read.sources
    groups = Groups()
    all_nodes = sorted(nodes.values())
    for ref, index in services.items():
        members = [index, *others.get(ref, ())]
        held = selectors[ref]
        if len(members) == 1 and (derivable(held) if isinstance(held, Service) else held):
            selector = None
            if pods.labels:
                selector = _selector_of(held) if isinstance(held, Service) else _selector_of_key(held)
            matched = pods.matching(ref[0], selector[0]) if selector is not None else []
            if selector is not None and matched:
                groups.derived.append(ref)
                members.extend(matched)
                members.extend(_nodes_for(matched, pods.node, nodes, all_nodes, every=selector[1]))
            else:
                groups.unserved.append(ref)
        groups.members[ref] = (sources[index], members)
    return groups


def _nodes_for(
    pods: Iterable[int],
    node_of: Mapping[int, str],
    nodes: Mapping[str, int],
    all_nodes: list[int],
    every: bool,
) -> list[int]:
    if not nodes:
        return []
    named = {node_of[i] for i in pods}
    found = [nodes[name] for name in named if name in nodes]
    return all_nodes if every or len(found) < len(named) else sorted(found)


def service_objects(source: str, service: Service, others: Iterable[KubeObject]) -> ServiceObjects:
    """A Service's members as its resolution reads them (its first legacy Endpoints; the slices
    derived from its Pods when it has neither slices nor Endpoints)."""
    slices: list[EndpointSlice] = []
    endpoints: Endpoints | None = None
    pods: list[Pod] = []
    nodes: dict[str, Node] = {}
    for obj in others:
        if isinstance(obj, EndpointSlice):
            slices.append(obj)
        elif isinstance(obj, Pod):
            pods.append(obj)
        elif isinstance(obj, Node):
            nodes.setdefault(obj.name, obj)
        elif endpoints is None and isinstance(obj, Endpoints):
            endpoints = obj
    derived: tuple[NormalizedSlice, ...] = ()
    if pods and not slices and endpoints is None and derivable(service):
        derived = derive_normalized(service, pods, nodes or None)
    return ServiceObjects(source, service, tuple(slices), endpoints, derived)


def summaries(groups: Groups) -> list[Diagnostic]:
    """The lines that say where endpoints came from when it is not the input's slices: how many
    Services got theirs from Pods, and the Services with a selector that have none to go by."""
    out = []
    if groups.derived:
        out.append(
            Diagnostic(
                _sources(groups, groups.derived),
                f"endpoints of {len(groups.derived)} Service(s) ({_names(groups.derived)}) derived from "
                "the input's Pods, as the EndpointSlice controller writes them (the input has no "
                "EndpointSlice or Endpoints for them)",
            )
        )
    refs = sorted(groups.members)
    if refs and all(len(groups.members[ref][1]) == 1 for ref in refs):
        out.append(
            Diagnostic(
                _sources(groups, refs),
                f"none of the {len(refs)} Service(s) ({_names(refs)}) has an EndpointSlice, Endpoints "
                "or matching Pod in the input, so every Service with a selector rejects its traffic; "
                "the kubectl command probably lacks endpointslices (kubectl get "
                "svc,endpointslices -A -o yaml)",
            )
        )
    elif groups.unserved:
        unserved = sorted(groups.unserved)
        out.append(
            Diagnostic(
                _sources(groups, unserved),
                f"{len(unserved)} Service(s) with a selector ({_names(unserved)}) have no "
                "EndpointSlice, Endpoints or matching Pod in the input: they have no endpoints",
            )
        )
    return out


def _names(refs: Sequence[ServiceRef]) -> str:
    listed = sorted(refs)
    return ", ".join(f"{ns}/{name}" for ns, name in listed[:_NAMED]) + (
        ", ..." if len(listed) > _NAMED else ""
    )


def _sources(groups: Groups, refs: Iterable[ServiceRef]) -> str:
    return ", ".join(dict.fromkeys(groups.members[ref][0] for ref in sorted(refs)))
