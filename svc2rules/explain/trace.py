"""Follow one connection through the resolved model, the way kube-proxy's rules would take it.

The order is the rules' order: nat first (ClusterIP, external and load-balancer IPs, then NodePorts
on node addresses; a frontend only has a nat rule while it has endpoints to send to), and only if
nothing was rewritten the filter verdicts on the original destination (REJECT for no endpoints,
DROP for no usable ones). Computed from the IR alone: no rules are parsed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from svc2rules.backends import DataplaneFacts, get_backend
from svc2rules.config import ProxyConfig
from svc2rules.explain.model import Candidate, Explanation, Match, Origin, Query, Step, Verdict
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Frontend, FrontendKind, Plan, ServicePort


@dataclass
class _Trace:
    plan: Plan
    query: Query
    origin: Origin
    origin_reason: str
    family: IPFamily
    backend: str
    facts: DataplaneFacts
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> ProxyConfig:
        return self.plan.config

    def step(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, detail))

    def done(
        self,
        verdict: Verdict,
        reason: str,
        match: Match | None = None,
        *,
        masquerade: bool = False,
        masquerade_reason: str = "",
        affinity_timeout: int | None = None,
        endpoints: tuple[Candidate, ...] = (),
    ) -> Explanation:
        return Explanation(
            query=self.query,
            origin=self.origin,
            origin_reason=self.origin_reason,
            verdict=verdict,
            reason=reason,
            match=match,
            steps=tuple(self.steps),
            masquerade=masquerade,
            masquerade_reason=masquerade_reason,
            affinity_timeout=affinity_timeout,
            endpoints=endpoints,
            notes=tuple(self.notes),
        )


def explain(plan: Plan, query: Query, backend: str = "iptables") -> Explanation:
    """What happens to the first packet of a connection `query` describes, on this node."""
    query = _canonical(query)
    family = IPFamily.IPv6 if ":" in query.dst else IPFamily.IPv4
    origin, why = origin_of(plan.config, query, family)
    t = _Trace(plan, query, origin, why, family, backend, get_backend(backend).facts)
    if not t.facts.kube_proxy_semantics:
        t.notes.append(f"explain models the iptables and nftables backends; {backend} may differ")
    ports = plan.for_family(family)
    ip_matches = [
        (sp, fe)
        for sp in ports
        for fe in sp.frontends
        if fe.ip == query.dst and fe.port == query.port and fe.protocol == query.protocol
    ]
    # nat: the first frontend with a rule wins (kube-proxy writes them in service-port order).
    for sp, fe in ip_matches:
        if _has_nat_rule(sp, fe):
            _shadowed(t, [s for s, _ in ip_matches if s is not sp])
            return _rewrite(t, sp, fe)
    if _nodeport_dispatch(t):
        nodeports = [sp for sp in ports if _is_nodeport(sp, query)]
        for sp in nodeports:
            if sp.has_endpoints:
                _shadowed(t, [s for s in nodeports if s is not sp])
                return _rewrite(
                    t, sp, Frontend(FrontendKind.NODE_PORT, query.dst, query.port, query.protocol)
                )
    # filter: verdicts on the untranslated destination.
    if ip_matches:
        sp, fe = ip_matches[0]
        return _refuse(t, sp, fe)
    if _nodeport_refusal_applies(t):
        for sp in ports:
            if _is_nodeport(sp, query) and not sp.has_external_endpoints:
                return _refuse(t, sp, Frontend(FrontendKind.NODE_PORT, query.dst, query.port, query.protocol))
    guarded = cluster_ip_guard(t)
    if guarded is not None:
        return guarded
    return _no_match(t)


# -- where the packet comes from ---------------------------------------------------------------------


def origin_of(config: ProxyConfig, query: Query, family: IPFamily) -> tuple[Origin, str]:
    if query.origin is not None:
        return query.origin, "given with --from"
    src = ipaddress.ip_address(query.src)
    if query.src in config.node_ips or src.is_loopback:
        return Origin.NODE, f"{query.src} is an address of this node"
    cidr = config.cluster_cidr(family.value)
    if cidr is not None and src in ipaddress.ip_network(cidr):
        return Origin.POD, f"{query.src} is in the cluster CIDR {cidr}"
    return Origin.EXTERNAL, f"{query.src} is neither a node address nor in the cluster CIDR"


def _canonical(query: Query) -> Query:
    src, dst = ipaddress.ip_address(query.src), ipaddress.ip_address(query.dst)
    if src.version != dst.version:
        raise ValueError(f"source {query.src} and destination {query.dst} are of different IP families")
    return Query(str(src), str(dst), query.port, query.protocol, query.origin)


def _source_is_local(t: _Trace) -> bool:
    """`--src-type LOCAL` / `fib saddr type local`: the node sent it (from one of its addresses)."""
    return (
        t.origin == Origin.NODE
        or t.query.src in t.config.node_ips
        or ipaddress.ip_address(t.query.src).is_loopback
    )


def _source_is_pod(t: _Trace) -> str | None:
    """The cluster CIDR containing the source (kube-proxy's ClusterCIDR local-traffic detector)."""
    cidr = t.config.cluster_cidr(t.family.value)
    if cidr is not None and ipaddress.ip_address(t.query.src) in ipaddress.ip_network(cidr):
        return cidr
    return None


# -- matching ---------------------------------------------------------------------------------------


def _has_nat_rule(sp: ServicePort, fe: Frontend) -> bool:
    if fe.kind == FrontendKind.CLUSTER_IP:
        return sp.has_internal_endpoints
    return sp.has_endpoints


def _is_nodeport(sp: ServicePort, query: Query) -> bool:
    return sp.node_port == query.port and sp.protocol == query.protocol


def _localhost_nodeports(t: _Trace) -> bool:
    return (
        t.facts.localhost_nodeports
        and t.config.localhost_nodeports
        and t.family == IPFamily.IPv4
        and t.origin == Origin.NODE
    )


def _nodeport_dispatch(t: _Trace) -> bool:
    """Is the destination one the NodePort rule of the nat table accepts?"""
    dst = ipaddress.ip_address(t.query.dst)
    allowed = t.config.node_port_ips(t.family.value, unset_means_primary=t.facts.nftables_semantics)
    if allowed is not None:  # nodePortAddresses
        if dst.is_loopback:
            return t.query.dst in allowed and _localhost_nodeports(t)
        return t.query.dst in allowed
    if dst.is_loopback:
        return _localhost_nodeports(t)
    return t.query.dst in t.config.node_ips


def _nodeport_refusal_applies(t: _Trace) -> bool:
    """Does the no-endpoint verdict of a NodePort apply to this destination? kube-proxy's
    iptables mode refuses on every local address (KUBE-EXTERNAL-SERVICES, `--dst-type LOCAL`);
    its nftables mode on the addresses its NodePort dispatch accepts (nodeport-endpoints-check)."""
    if t.facts.nftables_semantics:
        return _nodeport_dispatch(t)
    return _is_local_destination(t)


def _is_local_destination(t: _Trace) -> bool:
    """`--dst-type LOCAL` in the filter table: any node address, loopback included."""
    dst = ipaddress.ip_address(t.query.dst)
    return t.query.dst in t.config.node_ips or (dst.is_loopback and t.origin == Origin.NODE)


def _match(sp: ServicePort, fe: Frontend, query: Query) -> Match:
    return Match(
        namespace=sp.key.namespace,
        service=sp.key.name,
        port_name=sp.key.port_name,
        service_port=str(sp.key),
        frontend=fe.kind.value,
        address=query.dst,
        port=query.port,
        protocol=query.protocol,
    )


def _describe(fe: Frontend, sp: ServicePort, query: Query) -> str:
    where = f"{query.dst}:{query.port}/{query.protocol.value}"
    if fe.kind == FrontendKind.NODE_PORT:
        return f"{where}: NodePort {sp.node_port} of {sp.key} on node address {query.dst}"
    article = {
        "ClusterIP": "the ClusterIP",
        "ExternalIP": "an external IP",
        "LoadBalancer": "a load-balancer IP",
    }
    return f"{where} is {article[fe.kind.value]} of {sp.key}"


def _shadowed(t: _Trace, others: Sequence[ServicePort]) -> None:
    for sp in others:
        t.notes.append(f"{sp.key} claims the same address and port; the first service port's rule wins")


# -- rewritten: DNAT to an endpoint -----------------------------------------------------------------


def _rewrite(t: _Trace, sp: ServicePort, fe: Frontend) -> Explanation:
    q = t.query
    match = _match(sp, fe, q)
    t.step("match", _describe(fe, sp, q))
    if fe.kind == FrontendKind.CLUSTER_IP:
        pool, masq, masq_reason = _internal(t, sp)
    else:
        if fe.kind == FrontendKind.LOAD_BALANCER and sp.uses_firewall:
            allowed, detail = _source_ranges(t, sp)
            t.step("firewall", detail)
            if not allowed:
                return t.done(
                    Verdict.DROP,
                    f"source {q.src} is not allowed by loadBalancerSourceRanges of {sp.key}",
                    match,
                )
        external = _external(t, sp)
        if external is None:
            return t.done(
                Verdict.DROP,
                f"{sp.key} has no local endpoints (externalTrafficPolicy Local) for external clients",
                match,
            )
        pool, masq, masq_reason = external
    _endpoint_notes(t, sp, pool)
    if sp.affinity_timeout:
        scope = t.facts.affinity_scope or ""
        t.step(
            "affinity",
            f"sessionAffinity ClientIP, {sp.affinity_timeout} s: the first connection from {q.src} picks "
            "an endpoint with these probabilities; later ones within the timeout reuse it"
            + (f" (remembered {scope})" if scope else ""),
        )
    candidates = tuple(
        Candidate(
            ip=ep.ip,
            port=ep.port,
            probability=1.0 / len(pool),
            local=ep.is_local,
            node=ep.node_name,
            ready=ep.ready,
            serving=ep.serving,
            terminating=ep.terminating,
            masquerade=masq or ep.ip == q.src,
            hairpin=ep.ip == q.src,
        )
        for ep in pool
    )
    if any(c.hairpin for c in candidates):
        t.step("hairpin", f"{q.src} is itself an endpoint: if it is picked, it is masqueraded (hairpin)")
    t.step("masquerade", ("yes: " if masq else "no: ") + masq_reason)
    return t.done(
        Verdict.DNAT,
        f"DNAT to one of {len(pool)} endpoint(s) of {sp.key}",
        match,
        masquerade=masq,
        masquerade_reason=masq_reason,
        affinity_timeout=sp.affinity_timeout,
        endpoints=candidates,
    )


def _internal(t: _Trace, sp: ServicePort) -> tuple[tuple[Endpoint, ...], bool, str]:
    if sp.internal_policy_local:
        t.step("policy", "internalTrafficPolicy Local: only endpoints on this node")
    else:
        t.step("policy", "internalTrafficPolicy Cluster: endpoints anywhere in the cluster")
    cidr = t.config.cluster_cidr(t.family.value)
    local = _source_is_local(t)
    if t.config.masquerade_all:
        return sp.internal_endpoints, True, "masqueradeAll: every connection to a ClusterIP"
    if cidr is None:
        return (
            sp.internal_endpoints,
            False,
            "no cluster CIDR is known, so off-cluster sources cannot be told apart (nothing is masqueraded)",
        )
    if _source_is_pod(t) is None:
        who = "node-local source" if local else "off-cluster source"
        return (
            sp.internal_endpoints,
            True,
            f"{who} {t.query.src} is outside the cluster CIDR {cidr}: replies must come back through this node",
        )
    return sp.internal_endpoints, False, f"source {t.query.src} is in the cluster CIDR {cidr}"


def _external(t: _Trace, sp: ServicePort) -> tuple[tuple[Endpoint, ...], bool, str] | None:
    """Endpoint pool and masquerade of external-facing traffic, or None when it is dropped."""
    if not sp.external_policy_local:
        t.step("policy", "externalTrafficPolicy Cluster: endpoints anywhere in the cluster")
        return (
            sp.cluster_endpoints,
            True,
            "externalTrafficPolicy Cluster: external-facing traffic is masqueraded so that replies from "
            "an endpoint on another node come back through this one",
        )
    t.step("policy", "externalTrafficPolicy Local: only endpoints on this node, client address preserved")
    cidr = _source_is_pod(t)
    if cidr is not None:
        t.step(
            "short-circuit",
            f"source {t.query.src} is a pod (cluster CIDR {cidr}): it uses the Cluster endpoints, as if it "
            "had gone out to the load balancer and come back",
        )
        return (
            sp.cluster_endpoints,
            False,
            f"pod source {t.query.src} short-circuited to the Cluster endpoints",
        )
    if _source_is_local(t):
        t.step("short-circuit", "node-local source: it uses the Cluster endpoints")
        return (
            sp.cluster_endpoints,
            True,
            "node-local source sent to an external address of the Service: masqueraded",
        )
    if not sp.has_external_endpoints:
        t.step("drop", "no endpoint on this node, and the source is neither a pod nor the node")
        return None
    return sp.local_endpoints, False, "externalTrafficPolicy Local preserves the client address"


def _source_ranges(t: _Trace, sp: ServicePort) -> tuple[bool, str]:
    src = ipaddress.ip_address(t.query.src)
    for text in sp.source_ranges:
        if src in ipaddress.ip_network(text):
            return True, f"source {t.query.src} is in loadBalancerSourceRanges {text}"
    node_ip = t.config.node_ip(t.family.value)
    if (
        node_ip is not None
        and any(ipaddress.ip_address(node_ip) in ipaddress.ip_network(r) for r in sp.source_ranges)
        and t.query.src in sp.load_balancer_ips
    ):
        return True, (
            f"the node IP {node_ip} is in loadBalancerSourceRanges, so the load-balancer IP "
            f"{t.query.src} is allowed as a source too"
        )
    ranges = ", ".join(sp.source_ranges)
    return False, f"source {t.query.src} is not in loadBalancerSourceRanges ({ranges}): dropped"


def _endpoint_notes(t: _Trace, sp: ServicePort, pool: tuple[Endpoint, ...]) -> None:
    if pool and not any(ep.ready for ep in pool):
        t.step("endpoints", "no ready endpoint: falling back to those still serving while terminating")
    else:
        t.step("endpoints", f"{len(pool)} candidate(s), each picked with probability 1/{len(pool)}")


# -- refused or untouched ---------------------------------------------------------------------------


def _refuse(t: _Trace, sp: ServicePort, fe: Frontend) -> Explanation:
    q = t.query
    match = _match(sp, fe, q)
    t.step("match", _describe(fe, sp, q))
    if fe.kind == FrontendKind.CLUSTER_IP:
        if not sp.has_endpoints:
            return t.done(Verdict.REJECT, f"{sp.key} has no endpoints", match)
        return t.done(Verdict.DROP, f"{sp.key} has no local endpoints (internalTrafficPolicy Local)", match)
    # External-facing verdicts hang off filter INPUT and FORWARD (kube-proxy's
    # KUBE-EXTERNAL-SERVICES), never OUTPUT: the node's own traffic to an external or
    # load-balancer IP that is not one of its addresses is not refused here.
    if t.origin == Origin.NODE and not _is_local_destination(t):
        t.notes.append(
            "external-facing REJECT/DROP rules are hooked to INPUT and FORWARD only, "
            "so a node-originated connection to a non-local address is not refused on this node"
        )
        return t.done(
            Verdict.NONE,
            f"{sp.key} has no usable endpoints, but nothing refuses node-originated traffic to {q.dst}",
            match,
        )
    if not sp.has_endpoints:
        return t.done(Verdict.REJECT, f"{sp.key} has no endpoints", match)
    return t.done(Verdict.DROP, f"{sp.key} has no local endpoints (externalTrafficPolicy Local)", match)


def cluster_ip_guard(t: _Trace) -> Explanation | None:
    """kube-proxy's nftables cluster-ips-check (pkg/proxy/nftables/proxier.go): what no service
    port took, sent to a ClusterIP (a port its Service does not define) is rejected, sent to
    another address of a service CIDR (no Service holds it) dropped. None: the guard lets it be
    (another backend, no service CIDR of the family, or an address outside them)."""
    cidrs = t.plan.service_cidrs_of(t.family)
    if not t.facts.nftables_semantics or not cidrs:
        return None
    q = t.query
    where = f"{q.dst}:{q.port}/{q.protocol.value}"
    holders = sorted({str(sp.key) for sp in t.plan.for_family(t.family) if sp.cluster_ip == q.dst})
    if holders:
        t.step(
            "guard",
            f"{q.dst} is the ClusterIP of {', '.join(holders)}, which has no port {q.port}/{q.protocol.value}",
        )
        return t.done(
            Verdict.REJECT, f"no Service port has {where}: an undefined port of a ClusterIP is rejected"
        )
    dst = ipaddress.ip_address(q.dst)
    inside = next((c for c in cidrs if dst in ipaddress.ip_network(c)), None)
    if inside is None:
        return None
    t.step("guard", f"{q.dst} is in the service CIDR {inside}, but no proxied Service holds it")
    for svc in t.plan.services:
        if svc.skipped and q.dst in svc.cluster_ips:
            t.notes.append(f"{svc.namespace}/{svc.name} has this ClusterIP but is not proxied: {svc.skipped}")
    return t.done(Verdict.DROP, f"{q.dst} is an unallocated address of the service CIDR {inside}: dropped")


def _no_match(t: _Trace) -> Explanation:
    q = t.query
    where = f"{q.dst}:{q.port}/{q.protocol.value}"
    for sp in t.plan.for_family(t.family):
        for fe in sp.frontends:
            if fe.ip == q.dst:
                t.notes.append(
                    f"{q.dst} is {fe.kind.value} of {sp.key} on {fe.port}/{fe.protocol.value}, not {where}"
                )
    if not t.config.node_ips and any(_is_nodeport(sp, q) for sp in t.plan.for_family(t.family)):
        t.notes.append(
            f"a Service has NodePort {q.port}/{q.protocol.value}: give this node's addresses with --node-ip"
        )
    for svc in t.plan.services:
        if svc.skipped and q.dst in svc.cluster_ips:
            t.notes.append(f"{svc.namespace}/{svc.name} has this ClusterIP but is not proxied: {svc.skipped}")
    if _is_local_destination(t):
        if ipaddress.ip_address(q.dst).is_loopback and not _nodeport_dispatch(t):
            t.notes.append(f"the {t.backend} backend does not serve NodePorts on loopback addresses")
        return t.done(Verdict.NONE, f"no Service port listens on {where}: the node itself gets the packet")
    return t.done(Verdict.NONE, f"no Service port has {where}: the packet is not rewritten")
