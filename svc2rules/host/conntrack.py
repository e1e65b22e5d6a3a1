"""Stale UDP conntrack entries, cleared as kube-proxy's CleanStaleEntries does.

UDP has no connection end: a client that keeps sending from the same socket keeps
matching the conntrack entry that DNATed it to an endpoint, even after that endpoint
is gone. After a successful load we delete (a) entries still translated to a removed
endpoint of a UDP service port, for each of its frontends and NodePorts, and (b) for a
UDP service port that went from no endpoints to some, entries to its frontends that
were created while it had none (they bypassed DNAT and would otherwise persist).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from svc2rules.host.runner import Runner
from svc2rules.ir import Plan, Protocol, ServicePort

# Per UDP service port (its key): frontends, NodePorts and endpoints, as kept in the state.
UdpFacts = dict[str, dict[str, Any]]


def udp_facts(plan: Plan, ports: tuple[Any, ...] | None = None) -> UdpFacts:
    """What conntrack cleanup needs to know about each UDP service port (kept in the state)."""
    return udp_facts_of(ports if ports is not None else plan.service_ports)


def udp_facts_of(ports: Iterable[ServicePort]) -> UdpFacts:
    out: UdpFacts = {}
    for sp in ports:
        if sp.protocol != Protocol.UDP or ":" in sp.cluster_ip:
            continue
        ips = [sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips]
        out[str(sp.key)] = {
            "frontends": [[ip, sp.port] for ip in ips],
            "nodeports": [sp.node_port] if sp.node_port else [],
            "endpoints": sorted([ep.ip, ep.port] for ep in sp.reachable_endpoints),
        }
    return out


_DELETED = re.compile(r"(\d+) flow entries have been deleted")


@dataclass(frozen=True, slots=True)
class Deletion:
    argv: tuple[str, ...]
    why: str


def stale_deletions(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[Deletion]:
    out: list[Deletion] = []
    for key, before in sorted(old.items()):
        after = new.get(key, {"endpoints": []})
        gone = {tuple(e) for e in before["endpoints"]} - {tuple(e) for e in after["endpoints"]}
        for ip, port in sorted(gone):
            for vip, vport in before["frontends"]:
                out.append(
                    Deletion(
                        (
                            "conntrack",
                            "-D",
                            "-p",
                            "udp",
                            "--orig-dst",
                            vip,
                            "--orig-port-dst",
                            str(vport),
                            "--reply-src",
                            ip,
                            "--reply-port-src",
                            str(port),
                        ),
                        f"{key}: endpoint {ip}:{port} removed",
                    )
                )
            for node_port in before["nodeports"]:
                out.append(
                    Deletion(
                        (
                            "conntrack",
                            "-D",
                            "-p",
                            "udp",
                            "--orig-port-dst",
                            str(node_port),
                            "--reply-src",
                            ip,
                            "--reply-port-src",
                            str(port),
                        ),
                        f"{key}: endpoint {ip}:{port} removed (NodePort {node_port})",
                    )
                )
    for key, after in sorted(new.items()):
        previous = old.get(key)
        if not after["endpoints"] or (previous is not None and previous["endpoints"]):
            continue
        for vip, vport in after["frontends"]:
            out.append(
                Deletion(
                    ("conntrack", "-D", "-p", "udp", "--orig-dst", vip, "--orig-port-dst", str(vport)),
                    f"{key}: now has endpoints",
                )
            )
        for node_port in after["nodeports"]:
            out.append(
                Deletion(
                    ("conntrack", "-D", "-p", "udp", "--orig-port-dst", str(node_port)),
                    f"{key}: now has endpoints (NodePort {node_port})",
                )
            )
    return out


def clear_stale(runner: Runner, deletions: list[Deletion]) -> tuple[int, list[str]]:
    """Run the deletions; return (entries deleted, warnings). Never fails the apply:
    the rules are already loaded, stale entries only delay the switch to live endpoints."""
    deleted = 0
    warnings: list[str] = []
    for deletion in deletions:
        result = runner.run(deletion.argv)
        text = result.stderr + result.stdout
        # conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
        match = _DELETED.search(text)
        if match:
            deleted += int(match.group(1))
        else:
            if not result.ok:
                warnings.append(f"conntrack cleanup ({deletion.why}) failed: {text.strip()}")
    return deleted, warnings
