"""Plan -> nft script: pick the layout, build the table, format it with the template."""

from __future__ import annotations

from svc2rules.backends import Artifact, RenderOptions
from svc2rules.backends.nftables.grouped import GroupedLayout, LayoutObserver
from svc2rules.backends.nftables.kubeproxy import KubeProxyLayout
from svc2rules.backends.nftables.objects import Table
from svc2rules.backends.nftables.text import check_table_name, quote_comment
from svc2rules.errors import BackendError, UsageError
from svc2rules.ir import IPFamily, Plan, ServicePort
from svc2rules.templating import render_template

# kube-proxy drops per-endpoint comments above this many endpoints (largeClusterMode); element
# comments also cost load time and kernel memory, so `auto` follows the same threshold.
LARGE_CLUSTER_ENDPOINTS = 1000
# grouped: fixed number of objects (the default, see grouped.py); kube-proxy: per-Service chains.
LAYOUTS = {"grouped": GroupedLayout, "kube-proxy": KubeProxyLayout}
DEFAULT_LAYOUT = "grouped"


def render_nftables(plan: Plan, options: RenderOptions) -> Artifact:
    table, warnings, layout = build_table(plan, options)
    return Artifact("nftables", format_table(table, layout, options), tuple(warnings))


def format_table(table: Table, layout: str, options: RenderOptions) -> str:
    comments = options.comments != "never"
    return render_template(
        "nftables/ruleset.j2", table=table, layout=layout, comments=comments, quote=quote_comment
    )


def element_comments(ports: tuple[ServicePort, ...], options: RenderOptions) -> bool:
    if options.comments == "always":
        return True
    if options.comments == "never":
        return False
    return sum(len(sp.reachable_endpoints) for sp in ports) <= LARGE_CLUSTER_ENDPOINTS


def build_table(
    plan: Plan,
    options: RenderOptions,
    *,
    element_comments_on: bool | None = None,
    observer: LayoutObserver | None = None,
) -> tuple[Table, list[str], str]:
    """The table (what the template prints), the warnings and the layout's name.

    `element_comments_on` overrides the choice made from the plan's size (apply renders one
    Service at a time with the whole plan's choice); `observer` sees every port and element
    (grouped layout only)."""
    family = IPFamily(options.extra.get("family", IPFamily.IPv4))
    if family != IPFamily.IPv4:
        raise BackendError("the nftables backend renders IPv4 only for now (table ip6 output is planned)")
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


def layout_name(options: RenderOptions) -> str:
    layout = str(options.extra.get("nft_layout", DEFAULT_LAYOUT))
    if layout not in LAYOUTS:
        raise UsageError(f"unknown nftables layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    return layout
