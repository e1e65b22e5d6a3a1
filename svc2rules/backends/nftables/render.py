"""Plan -> nft script: pick the layout, build the table, format it with the template."""

from __future__ import annotations

from svc2rules.backends import Artifact, RenderOptions
from svc2rules.backends.nftables.grouped import GroupedLayout
from svc2rules.backends.nftables.kubeproxy import KubeProxyLayout
from svc2rules.backends.nftables.objects import Table
from svc2rules.backends.nftables.text import check_table_name, quote_comment
from svc2rules.errors import BackendError, UsageError
from svc2rules.ir import IPFamily, Plan
from svc2rules.templating import render_template

# kube-proxy drops per-endpoint comments above this many endpoints (largeClusterMode); element
# comments also cost load time and kernel memory, so `auto` follows the same threshold.
LARGE_CLUSTER_ENDPOINTS = 1000
# grouped: fixed number of objects (the default, see grouped.py); kube-proxy: per-Service chains.
LAYOUTS = {"grouped": GroupedLayout, "kube-proxy": KubeProxyLayout}
DEFAULT_LAYOUT = "grouped"


def render_nftables(plan: Plan, options: RenderOptions) -> Artifact:
    family = IPFamily(options.extra.get("family", IPFamily.IPv4))
    if family != IPFamily.IPv4:
        raise BackendError("the nftables backend renders IPv4 only for now (table ip6 output is planned)")
    layout = str(options.extra.get("nft_layout", DEFAULT_LAYOUT))
    if layout not in LAYOUTS:
        raise UsageError(f"unknown nftables layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    name = check_table_name(options.table)
    ports = plan.for_family(family)
    warnings: list[str] = []
    skipped = len(plan.service_ports) - len(ports)
    if skipped:
        warnings.append(f"{skipped} IPv6 service port(s) not rendered: the nftables backend is IPv4 only")

    total_endpoints = sum(len(sp.reachable_endpoints) for sp in ports)
    if options.comments == "always":
        element_comments = True
    elif options.comments == "never":
        element_comments = False
    else:
        element_comments = total_endpoints <= LARGE_CLUSTER_ENDPOINTS
    comments = options.comments != "never"

    table = Table("ip", name, quote_comment("svc2rules: Kubernetes Services") if comments else "")
    builder = LAYOUTS[layout](
        plan,
        ports,
        table,
        element_comments=element_comments,
        rule_comments=comments,
        hooks=options.jumps,
    )
    warnings += builder.build()
    text = render_template(
        "nftables/ruleset.j2", table=table, layout=layout, comments=comments, quote=quote_comment
    )
    return Artifact("nftables", text, tuple(warnings))
