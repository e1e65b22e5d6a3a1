"""Planning from the changed Services alone (pure: the state and the compile in, the chains
to compare out).

The state keeps what each Service had loaded (its own chains, its share of every shared
chain, its UDP ports and counts), so only the changed Services' new versions are rendered:
their own chains are compared with their records, and each shared chain is the old one with
the changed Services' rules spliced out and in (services.py: a shared chain is its fixed
head, every Service's rules in plan order, then its fixed tail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.iptables.model import (
    TABLES,
    Chains,
    Desired,
    IptablesState,
    Record,
    StoredChains,
    endpoint_comments,
    ours,
    service_context,
    sysctls,
    totals,
)
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.backends.iptables.services import head_lengths, service_part
from svc2rules.host.conntrack import udp_facts_of
from svc2rules.ir import Plan

if TYPE_CHECKING:
    from svc2rules.compile import Compilation


@dataclass
class ServicesWrite:
    """What a write planned from the changed Services compares, and the state it leaves."""

    compare: dict[str, Chains]  # table -> chains that may have changed, as they should be
    before: dict[str, StoredChains]  # table -> what they compare with (the state's view)
    shared: dict[str, StoredChains]  # table -> the state's shared chains after the write
    removable: dict[str, list[str]]  # table -> the changed Services' old chains
    by_service: dict[str, Any]
    desired: Desired
    sysctls: dict[str, str]


def _service_key(name: str) -> tuple[str, str]:
    """Plan order of `namespace/name` (neither part contains a slash)."""
    namespace, _, service = name.partition("/")
    return namespace, service


def splice(
    text: str,
    counts: dict[str, int],
    head: int,
    changed: set[str],
    new_rules: dict[str, list[str]],
) -> tuple[list[str], dict[str, int]] | None:
    """A shared chain with the changed Services' rules replaced.

    The chain is `head` fixed rules, each Service's rules in plan order (`counts`, in that
    order), then fixed rules. Returns the new rules and counts, or None when the chain is
    shorter than the counts say (then the whole plan is diffed)."""
    rules = text.split("\n") if text else []
    out = rules[:head]
    out_counts: dict[str, int] = {}
    pending = sorted(new_rules, key=_service_key)
    i = 0
    position = head
    for name, count in counts.items():
        key = _service_key(name)
        while i < len(pending) and _service_key(pending[i]) <= key:
            out.extend(new_rules[pending[i]])
            out_counts[pending[i]] = len(new_rules[pending[i]])
            i += 1
        if name not in changed:
            out.extend(rules[position : position + count])
            out_counts[name] = count
        position += count
    for name in pending[i:]:
        out.extend(new_rules[name])
        out_counts[name] = len(new_rules[name])
    if position > len(rules):
        return None
    out.extend(rules[position:])
    return out, out_counts


def plan_from_services(
    old: IptablesState, compiled: Compilation, options: RenderOptions[None], names: ChainNames
) -> ServicesWrite | None:
    """The chains a write from the changed Services compares, or None when it needs the whole
    plan: the state has no per-Service entries, or something every Service's rules depend on
    changed (config, options, code, endpoint comments)."""
    old_groups, segments, owned = old.get("groups"), old.get("segments"), old.get("owned")
    old_totals, tables = old.get("totals"), old.get("tables")
    if (
        not isinstance(old_groups, dict)
        or not isinstance(segments, dict)
        or not isinstance(owned, dict)
        or not isinstance(old_totals, dict)
        or not isinstance(tables, dict)
    ):
        return None
    groups = compiled.service_groups()
    changed = [name for name, fp in groups.items() if old_groups.get(name) != fp]
    changed += [name for name in old_groups if name not in groups]
    before: dict[str, Record] = {}
    for name in changed:
        if name in old_groups:
            record = Record.read(owned.get(name))
            if record is None:
                return None
            before[name] = record
    config = compiled.config
    entries = compiled.entries_named(changed)
    after_resolutions = {name: compiled.resolution(entry) for name, entry in entries.items()}
    endpoints = old_totals.get("endpoints", 0) - sum(r.endpoints for r in before.values())
    endpoints += sum(totals(r.service_ports)["endpoints"] for r in after_resolutions.values())
    comments_on = endpoint_comments(endpoints, options)
    ctx = service_context(config, options, comments_on)
    if ctx != old.get("ctx"):
        return None
    new_parts = {
        name: service_part(config, r.service_ports, options, endpoint_comments=comments_on)
        for name, r in after_resolutions.items()
    }
    after = {name: Record.of(new_parts[name], r.service_ports) for name, r in after_resolutions.items()}
    new_totals = {
        "endpoints": endpoints,
        "nodeports": old_totals.get("nodeports", 0)
        - sum(r.nodeports for r in before.values())
        + sum(r.nodeports for r in after.values()),
    }
    heads = head_lengths(config, options)
    compare: dict[str, Chains] = {}
    views: dict[str, StoredChains] = {}
    shared_after: dict[str, StoredChains] = {}
    removable: dict[str, list[str]] = {}
    new_segments: dict[str, dict[str, dict[str, int]]] = {}
    changed_set = set(changed)
    origins: dict[str, str] = {}
    for table in TABLES:
        shared_old: StoredChains = tables.get(table, {})
        # What the write compares against: the shared chains, and the changed Services'.
        view = shared_old.copy()  # (dict(...) re-inserts a table with holes one by one)
        touched: Chains = {}
        for name, record in before.items():
            for chain, text in record.chains.get(table, {}).items():
                view[chain] = text
                origins[chain] = name
        for part in new_parts.values():
            touched.update(part.chains.get(table, {}))
        chains = shared_old.copy()  # the state's shared chains, after the write
        table_segments = dict(segments.get(table, {}))
        shared = dict.fromkeys(
            [c for c, counts in table_segments.items() if changed_set.intersection(counts)]
            + [c for p in new_parts.values() for c in p.shared.get(table, {})]
        )
        for chain in shared:
            spliced = splice(
                shared_old.get(chain, ""),
                table_segments.get(chain, {}),
                heads.get(table, {}).get(chain, 0),
                changed_set,
                {n: p.shared[table][chain] for n, p in new_parts.items() if chain in p.shared.get(table, {})},
            )
            if spliced is None:
                return None
            rules, counts = spliced
            if counts:
                table_segments[chain] = counts
            else:
                table_segments.pop(chain, None)
            chains[chain] = "\n".join(rules)
            touched[chain] = rules
        compare[table] = touched
        views[table] = view
        shared_after[table] = chains
        removable[table] = [c for r in before.values() for c in r.chains.get(table, {}) if c not in touched]
        new_segments[table] = table_segments
    new_owned = owned.copy()
    for name in before:
        new_owned.pop(name, None)
    for name, record in after.items():
        new_owned[name] = record.write()
    by_service = {
        "groups": groups,
        "ctx": ctx,
        "totals": new_totals,
        "segments": new_segments,
        "owned": new_owned,
    }

    udp = old.get("udp", {}).copy()
    for record in before.values():
        for key in record.udp:
            udp.pop(key, None)
    for resolution in after_resolutions.values():
        udp.update(udp_facts_of(ours(resolution.service_ports)))
    ports = tuple(sp for r in after_resolutions.values() for sp in ours(r.service_ports))
    jumps = {t: [(c, s) for c, s in old.get("jumps", {}).get(t, [])] for t in TABLES}
    desired = Desired(Plan(config, ports, ()), options, names, compare, jumps, udp, by_service)
    desired.origins().update(origins)
    return ServicesWrite(
        compare, views, shared_after, removable, by_service, desired, sysctls(config, new_totals["nodeports"])
    )
