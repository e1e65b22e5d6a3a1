"""Plan -> one reviewable text per family with every section kube-proxy's IPVS mode needs,
each section spelt by its target's writer (the template only lays them out)."""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.ipvs.build import build_ruleset, default_scheduler
from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.backends.ipvs.options import IpvsOptions
from svc2rules.family import FAMILIES as ALL_FAMILIES
from svc2rules.family import IPFamily
from svc2rules.ir import Plan
from svc2rules.syntax import iproute, ipset, ipvsadm, xtables
from svc2rules.syntax.ipvsadm import VirtualServer
from svc2rules.templating import render_template

# The families this backend serves.
FAMILIES = frozenset({IPFamily.IPv4})
LOADER = "svc2rules apply --backend ipvs"


@dataclass(frozen=True, slots=True)
class _Group:
    """The virtual servers of one Service port, in the ipvsadm section."""

    service: str
    servers: list[VirtualServer]

    @property
    def text(self) -> str:
        return ipvsadm.write(self.servers)


def render_ipvs(plan: Plan, options: RenderOptions[IpvsOptions]) -> Artifact:
    warnings = [
        f"{len(plan.for_family(family))} {family} service port(s) not rendered: "
        f"the ipvs backend is {' and '.join(sorted(FAMILIES))} only"
        for family in ALL_FAMILIES
        if family not in FAMILIES and plan.for_family(family)
    ]
    parts = []
    for family in sorted(FAMILIES):
        rules = build_ruleset(plan, options, family)
        parts.append(ArtifactPart(family, LOADER, _text(plan, rules, options)))
        warnings += rules.warnings
    return Artifact("ipvs", tuple(parts), tuple(warnings))


def _text(plan: Plan, rules: IpvsRuleset, options: RenderOptions[IpvsOptions]) -> str:
    comments = options.comments.on
    groups: list[_Group] = []
    for vs in rules.virtual_servers:
        service = rules.owner(vs).service
        if groups and groups[-1].service == service:
            groups[-1].servers.append(vs)
        else:
            groups.append(_Group(service, [vs]))
    iface = rules.dummy_interface
    dummy: list[iproute.Command] = [iproute.LinkAdd(iface), iproute.LinkUp(iface)]
    dummy += [iproute.AddressAdd(iface, address) for address in rules.bind_addresses]
    sets: list[ipset.Command] = []
    for s in rules.ipsets:
        if comments:
            sets.append(ipset.Note(s.description))
        sets += ipset.filled(s)
    return render_template(
        "ipvs/ruleset.j2",
        dummy=iproute.write(dummy),
        ipsets=ipset.write(sets),
        iptables=xtables.write_tables(rules.tables),
        groups=groups,
        scheduler=default_scheduler(plan, options),
        comments=comments,
        prefix=options.chain_prefix,
    )
