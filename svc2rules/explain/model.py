"""What `explain` is asked and what it answers; `to_dict` is the stable `-o json` contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from svc2rules.ir import Protocol


class Origin(StrEnum):
    EXTERNAL = "external"  # arrives from the network (nat PREROUTING)
    POD = "pod"  # arrives from a local pod (nat PREROUTING), source in the cluster CIDR
    NODE = "node"  # a process on the node itself (nat OUTPUT)


class Verdict(StrEnum):
    DNAT = "dnat"  # rewritten to one of the candidate endpoints
    REJECT = "reject"  # refused: the service port has no endpoints
    DROP = "drop"  # silently dropped: no usable endpoint for this policy, or a source-range firewall
    NONE = "none"  # no service rule touches the packet: it goes where it was addressed


@dataclass(frozen=True, slots=True)
class Query:
    src: str
    dst: str
    port: int
    protocol: Protocol
    origin: Origin | None = None  # None: derived from the source address


@dataclass(frozen=True, slots=True)
class Step:
    """One decision on the packet's way, in the order kube-proxy's rules take them."""

    step: str
    detail: str


@dataclass(frozen=True, slots=True)
class Match:
    namespace: str
    service: str
    port_name: str
    service_port: str  # ns/name[:port], kube-proxy's ServicePortName
    frontend: str  # ClusterIP | ExternalIP | LoadBalancer | NodePort
    address: str
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class Candidate:
    ip: str
    port: int
    probability: float
    local: bool
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    masquerade: bool  # is the connection masqueraded if this endpoint is picked
    hairpin: bool  # the client is this endpoint

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Explanation:
    query: Query
    origin: Origin
    origin_reason: str
    verdict: Verdict
    reason: str
    match: Match | None = None
    steps: tuple[Step, ...] = ()
    masquerade: bool = False  # before the endpoint is picked; hairpin adds to it per candidate
    masquerade_reason: str = ""
    affinity_timeout: int | None = None
    endpoints: tuple[Candidate, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # Why the matched Service has no (ready) endpoints, when it has none on this path
    # (explain.why, from the input's Pods or slices; empty when not asked or not needed).
    why: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        return {
            "query": {
                "src": self.query.src,
                "dst": self.query.dst,
                "port": self.query.port,
                "protocol": self.query.protocol.value,
                "from": self.origin.value,
                "fromReason": self.origin_reason,
            },
            "verdict": self.verdict.value,
            "reason": self.reason,
            "match": None
            if m is None
            else {
                "namespace": m.namespace,
                "service": m.service,
                "portName": m.port_name,
                "servicePort": m.service_port,
                "frontend": m.frontend,
                "address": m.address,
                "port": m.port,
                "protocol": m.protocol.value,
            },
            "steps": [{"step": s.step, "detail": s.detail} for s in self.steps],
            "masquerade": {"applies": self.masquerade, "reason": self.masquerade_reason},
            "affinity": None
            if self.affinity_timeout is None
            else {"type": "ClientIP", "timeoutSeconds": self.affinity_timeout},
            "endpoints": [
                {
                    "address": c.address,
                    "ip": c.ip,
                    "port": c.port,
                    "probability": c.probability,
                    "local": c.local,
                    "node": c.node,
                    "ready": c.ready,
                    "serving": c.serving,
                    "terminating": c.terminating,
                    "masquerade": c.masquerade,
                    "hairpin": c.hairpin,
                }
                for c in self.endpoints
            ],
            "notes": list(self.notes),
            "why": list(self.why),
        }
