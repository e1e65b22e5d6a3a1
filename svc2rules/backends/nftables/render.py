"""Plan -> nft script: pick the layout, build the table, format it with the template."""

from __future__ import annotations

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.nftables.grouped import GroupedLayout, LayoutObserver
from svc2rules.backends.nftables.kubeproxy import KubeProxyLayout
from svc2rules.backends.nftables.objects import Table
from svc2rules.backends.nftables.options import NftablesOptions
from svc2rules.backends.nftables.text import check_table_name, quote_comment
from svc2rules.family import IPFamily
from svc2rules.ir import Plan, ServicePort
from svc2rules.templating import render_template


def render_nftables(plan: Plan, options: RenderOptions[NftablesOptions]) -> Artifact:
    table, warnings, layout = build_table(plan, options)
    text = format_table(table, layout, options)
    return Artifact("nftables", (ArtifactPart(IPFamily.IPv4, "nft -f", text),), tuple(warnings))


def format_table(table: Table, layout: str, options: RenderOptions[NftablesOptions]) -> str:
    comments = options.comments != "never"
    return render_template(
        "nftables/ruleset.j2", table=table, layout=layout, comments=comments, quote=quote_comment
    )


def element_comments(ports: tuple[ServicePort, ...], options: RenderOptions[NftablesOptions]) -> bool:
    return options.comments.per_endpoint(sum(len(sp.reachable_endpoints) for sp in ports))


def build_table(
    plan: Plan,
    options: RenderOptions[NftablesOptions],
    *,
    element_comments_on: bool | None = None,
    observer: LayoutObserver | None = None,
) -> tuple[Table, list[str], str]:
    """The table (what the template prints), the warnings and the layout's name.

    `element_comments_on` overrides the choice made from the plan's size (apply renders one
    Service at a time with the whole plan's choice); `observer` sees every port and element
    (grouped layout only)."""
    family = IPFamily.IPv4
    layout = layout_name(options)
    name = check_table_name(options.table)
    ports = plan.for_family(family)
    warnings: list[str] = []
    skipped = len(plan.service_ports) - len(ports)
    if skipped:
        warnings.append(f"{skipped} IPv6 service port(s) not rendered: the nftables backend is IPv4 only")
    if element_comments_on is None:
        element_comments_on = element_comments(ports, options)
    comments = options.comments != "never"

    table = Table("ip", name, quote_comment("svc2rules: Kubernetes Services") if comments else "")
    if layout == "grouped":
        builder: GroupedLayout | KubeProxyLayout = GroupedLayout(
            plan,
            ports,
            table,
            element_comments=element_comments_on,
            rule_comments=comments,
            hooks=options.jumps,
            observer=observer,
        )
    else:
        builder = KubeProxyLayout(
            plan,
            ports,
            table,
            element_comments=element_comments_on,
            rule_comments=comments,
            hooks=options.jumps,
        )
    warnings += builder.build()
    return table, warnings, layout


def layout_name(options: RenderOptions[NftablesOptions]) -> str:
    return (options.backend or NftablesOptions()).layout
