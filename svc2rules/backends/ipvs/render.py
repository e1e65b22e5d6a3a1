"""Plan -> one reviewable text with every section kube-proxy's IPVS mode needs."""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.ipvs.build import build_ruleset, default_scheduler
from svc2rules.backends.ipvs.model import VirtualServer
from svc2rules.backends.ipvs.options import IpvsOptions
from svc2rules.family import IPFamily
from svc2rules.ir import Plan
from svc2rules.templating import render_template


@dataclass(frozen=True, slots=True)
class _Group:
    service: str
    servers: list[VirtualServer]


def render_ipvs(plan: Plan, options: RenderOptions[IpvsOptions]) -> Artifact:
    rules = build_ruleset(plan, options)
    groups: list[_Group] = []
    for vs in rules.virtual_servers:
        if groups and groups[-1].service == vs.service:
            groups[-1].servers.append(vs)
        else:
            groups.append(_Group(vs.service, [vs]))
    text = render_template(
        "ipvs/ruleset.j2",
        rules=rules,
        groups=groups,
        scheduler=default_scheduler(plan, options),
        comments=options.comments != "never",
        prefix=options.chain_prefix,
    )
    return Artifact(
        "ipvs", (ArtifactPart(IPFamily.IPv4, "svc2rules apply --backend ipvs", text),), rules.warnings
    )
