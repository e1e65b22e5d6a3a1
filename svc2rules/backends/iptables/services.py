"""The iptables ruleset Service by Service, so `apply` can rewrite one Service's part of it.

A service port only appends to the tables (render.TableWriter): chains of its own (SVC, SVL,
EXT, FW, SEP, named after the port) and rules in the shared chains (SERVICES, NODEPORTS,
EXTERNAL-SERVICES, ...). So each shared chain is its fixed head, then every Service's rules in
plan order, then its fixed tail; and a Service's part depends on its own ports, the config, the
options and whether endpoint rules carry comments, never on the other Services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from svc2rules.backends import RenderOptions
from svc2rules.backends.iptables.render import FAMILY, TableWriter, build_tables
from svc2rules.config import ProxyConfig
from svc2rules.ir import Plan, ServicePort
from svc2rules.syntax.xtables import Table

TABLES = ("filter", "nat")


def service_of(sp: ServicePort) -> str:
    """`namespace/name`, as the incremental compile names a Service."""
    return f"{sp.key.namespace}/{sp.key.name}"


@dataclass
class ServicePart:
    """What one Service adds to each table."""

    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> own chain -> rules
    shared: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> shared chain -> rules


def _part(tables: Iterable[Table], spans: dict[str, tuple[int, int, int, int]]) -> ServicePart:
    part = ServicePart()
    for table in tables:
        rule_start, rule_end, chain_start, chain_end = spans[table.name]
        own: dict[str, list[str]] = {c: [] for c in table.chains[chain_start:chain_end]}
        shared: dict[str, list[str]] = {}
        for rule in table.rules[rule_start:rule_end]:
            target = own.get(rule.chain)
            if target is None:
                target = shared.setdefault(rule.chain, [])
            target.append(rule.spec)
        part.chains[table.name] = own
        part.shared[table.name] = shared
    return part


def split_by_service(plan: Plan, options: RenderOptions[None]) -> tuple[list[Table], dict[str, ServicePart]]:
    """The whole tables (exactly build_tables') and what each Service contributed to them."""
    marks: list[tuple[str | None, dict[str, tuple[int, int]]]] = []

    def on_port(writer: TableWriter, sp: ServicePort | None) -> None:
        name = service_of(sp) if sp is not None else None
        if sp is None or not marks or marks[-1][0] != name:
            marks.append((name, {t.name: (len(t.rules), len(t.chains)) for t in (writer.filter, writer.nat)}))

    tables, _ = build_tables(plan, options, on_port=on_port)
    parts: dict[str, ServicePart] = {}
    for (name, start), (_, end) in pairwise(marks):
        assert name is not None
        spans = {t: (start[t][0], end[t][0], start[t][1], end[t][1]) for t in TABLES}
        parts[name] = _part(tables, spans)
    return tables, parts


def service_part(
    config: ProxyConfig,
    ports: Iterable[ServicePort],
    options: RenderOptions[None],
    *,
    endpoint_comments: bool,
) -> ServicePart:
    """One Service's part, rendered on its own (its ports of our family, as build_tables renders)."""
    writer = TableWriter(config, options, endpoint_comments=endpoint_comments)
    for sp in ports:
        if sp.family == FAMILY:
            writer.add_port(sp)
    tables = (writer.filter, writer.nat)
    spans = {t.name: (0, len(t.rules), 0, len(t.chains)) for t in tables}
    return _part(tables, spans)


def head_lengths(config: ProxyConfig, options: RenderOptions[None]) -> dict[str, dict[str, int]]:
    """How many fixed rules each chain has before the Services' (table -> chain -> count)."""
    writer = TableWriter(config, options, endpoint_comments=False)
    writer.head()
    out: dict[str, dict[str, int]] = {}
    for table in (writer.filter, writer.nat):
        counts = out.setdefault(table.name, {})
        for rule in table.rules:
            counts[rule.chain] = counts.get(rule.chain, 0) + 1
    return out
