"""`svc2rules explain` checked against the kernel: every probe of every scenario, after it passed.

For each deployed manifest, the same plan the compiler used is explained (in-process, the exact
dictionary `explain -o json` prints) for each probe's (source, destination, port, protocol,
origin), and the prediction is held against what the connections did:

* ``dnat``: every connection Answered by one of the candidate endpoints, masqueraded exactly when
  the candidate says so (else the endpoint saw the client's own address); with enough connections
  and no session affinity, every candidate was hit.
* ``reject``: Rejected. ``drop``: Dropped (node-originated UDP dropped in OUTPUT surfaces as
  EPERM, i.e. Rejected, see docs/lab.md). ``none``: the sink or the node itself answered.

Only backends explain models (kube-proxy's iptables/nftables semantics) are replayed.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

from svc2rules.api import build_plan
from svc2rules.backends import get_backend
from svc2rules.config import ProxyConfig
from svc2rules.explain import Origin, Query, explain
from svc2rules.ir import Plan, Protocol
from svc2rules.load import Source

from .lab import Deployment, Lab
from .loaders import NODE_NAME
from .probe import Answered, Dropped, Outcome, ProbeResult, Rejected, Sink
from .topology import CLUSTER_CIDR, NODE_ADDRESSES, NODE_IP, NODE_PODS_IP, NODE_SINK_IP

_ORIGIN = {"ext": Origin.EXTERNAL, "pod": Origin.POD, "node": Origin.NODE}
# Connections per candidate above which a uniform pick missing one is negligible (< 4e-7 for 4).
_SPREAD = 15


def check_explain(lab: Lab) -> None:
    problems: list[str] = []
    checked = 0
    for deployment, results in _by_deployment(lab):
        if not get_backend(deployment.backend).facts.kube_proxy_semantics:
            continue  # explain says itself that it does not model this backend's dataplane
        plan = _plan(deployment)
        for result in results:
            problems += _check_probe(plan, deployment.backend, result)
            checked += 1
    if problems:
        raise AssertionError(
            f"svc2rules explain disagrees with the kernel on {len(problems)} point(s) "
            f"({checked} probe(s) checked):\n" + "\n".join(problems)
        )


def _by_deployment(lab: Lab) -> list[tuple[Deployment, list[ProbeResult]]]:
    out = []
    for i, deployment in enumerate(lab.deployments):
        end = lab.deployments[i + 1].first_probe if i + 1 < len(lab.deployments) else len(lab.history)
        out.append((deployment, lab.history[deployment.first_probe : end]))
    return out


def _plan(deployment: Deployment) -> Plan:
    # The compiler was given the lab's node IP only; kube-proxy's NodePort rule matches every local
    # address (addrtype LOCAL), so explain is told all of the node's addresses.
    config = ProxyConfig(
        node_name=NODE_NAME,
        node_ips=(NODE_IP, NODE_PODS_IP, NODE_SINK_IP),
        cluster_cidrs=(CLUSTER_CIDR,),
        masquerade_all=deployment.masquerade_all,
    )
    return build_plan([Source("lab.yaml", deployment.manifest.encode())], config).plan


def node_source(dst: str) -> str:
    """The source the node's kernel picks for its own connection (the lab's routes, docs/lab.md)."""
    if dst in NODE_ADDRESSES:
        return dst
    if ipaddress.ip_address(dst) in ipaddress.ip_network(CLUSTER_CIDR):
        return NODE_PODS_IP
    return NODE_IP


def _check_probe(plan: Plan, backend: str, result: ProbeResult) -> list[str]:
    p = result.probe
    per_source: dict[str, list[Outcome]] = defaultdict(list)
    for src, outcome in zip(result.sources, result.outcomes, strict=True):
        per_source[src or node_source(p.dst)].append(outcome)
    problems: list[str] = []
    candidates: set[frozenset[str]] = set()
    hit: set[str] = set()
    affinity = False
    for src, outcomes in sorted(per_source.items()):
        query = Query(src, p.dst, p.port, Protocol(p.proto.upper()), _ORIGIN[p.origin])
        predicted = explain(plan, query, backend).to_dict()
        for problem in _compare(predicted, outcomes, src, p.origin, p.proto):
            problems.append(
                f"{result.summary()}\n    from {src}: {problem}; explain said: {predicted['reason']}"
            )
        if predicted["verdict"] == "dnat":
            candidates.add(frozenset(c["address"] for c in predicted["endpoints"]))
            hit |= {o.endpoint for o in outcomes if isinstance(o, Answered)}
            affinity = affinity or predicted["affinity"] is not None
    if len(candidates) == 1 and not affinity and not problems:
        expected = next(iter(candidates))
        if len(result.outcomes) >= _SPREAD * len(expected) and hit != expected:
            problems.append(f"{result.summary()}\n    candidates never hit: {sorted(expected - hit)}")
    return problems


def _compare(
    predicted: dict[str, Any], outcomes: list[Outcome], src: str, origin: str, proto: str
) -> list[str]:
    verdict = predicted["verdict"]
    if verdict == "dnat":
        candidates = {c["address"]: c for c in predicted["endpoints"]}
        out = []
        for o in outcomes:
            if not isinstance(o, Answered):
                out.append(f"predicted DNAT, got {o!r}")
            elif o.endpoint not in candidates:
                out.append(f"{o.endpoint} answered, not a candidate ({sorted(candidates)})")
            elif candidates[o.endpoint]["masquerade"] and not o.masqueraded:
                out.append(f"{o.endpoint} saw {o.saw_source}, predicted masqueraded")
            elif not candidates[o.endpoint]["masquerade"] and o.saw_source != src:
                out.append(f"{o.endpoint} saw {o.saw_source}, predicted the client's own {src}")
        return sorted(set(out))
    allowed: tuple[type, ...] = {
        "reject": (Rejected,),
        "drop": (Dropped, Rejected) if origin == "node" and proto == "udp" else (Dropped,),
        "none": (Sink,),
    }[verdict]
    wrong = sorted({repr(o) for o in outcomes if not isinstance(o, allowed)})
    return [f"predicted {verdict}, got {', '.join(wrong)}"] if wrong else []
