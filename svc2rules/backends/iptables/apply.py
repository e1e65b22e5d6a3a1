"""iptables applier: incremental, validated `iptables-restore --noflush` writes.

Facts about iptables-nft 1.8.9 this design rests on (measured; see README "apply"):

* Each `*table ... COMMIT` section is its own kernel transaction: one restore is atomic
  per table, not across tables. We write **nat first**: it is the big section and the one
  a kernel can still refuse; if it is refused nothing has changed. The filter section is
  small and is trial-loaded in a scratch network namespace first, so it does not fail
  after nat went in. While the loader runs it holds our lock (runner.py), so a reader
  that takes the lock never sees one table new and the other old.
* `--noflush` restores keep a sorted linked list of every chain a command names, which is
  quadratic in the chains of the payload (1k Services x 10 endpoints: 38 s instead of
  1.7 s). A chain-less command (`-S`, which only lists) makes the restore fetch the whole
  table once instead; we put it first in big sections. It cannot create missing built-in
  chains, so a full load is preceded by a no-op restore that creates them (append and
  delete a probe rule in the same transaction).
* `--test` does not resolve chain references, so validation also checks every reference
  to one of our chains statically and trial-loads the filter section (with placeholders
  for the host's chains it edits) in a scratch network namespace (`unshare --net`). The
  nat section needs no trial: it goes first, and a refused nat transaction leaves the
  host unchanged.
* A one-Service change writes only that Service's chains plus positional `-D`/`-I`/`-R`
  edits of the global chains, at positions taken from the state file.
"""

from __future__ import annotations

import difflib
import hashlib
import marshal
import os
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import BaseState, Change, ChangeKind, IncrementalApplier
from svc2rules.backends.iptables.render import build_tables
from svc2rules.backends.iptables.services import (
    ServicePart,
    head_lengths,
    service_part,
    split_by_service,
)
from svc2rules.compile import Compilation as IncrementalCompile
from svc2rules.compile.cache import code_identity
from svc2rules.config import ProxyConfig
from svc2rules.errors import ApplyError, LockBusyError
from svc2rules.family import IPFamily
from svc2rules.host.conntrack import udp_facts, udp_facts_of
from svc2rules.host.runner import Result, Runner, first_line
from svc2rules.ir import Plan, ServicePort
from svc2rules.naming import ChainNames

TABLE_ORDER = ("nat", "filter")
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
# Chains above this many touched in one section get the chain-less `-S` (see module doc).
ALL_CHAINS_THRESHOLD = 200
# Chains with more rules than this are edited in place (positional) instead of rewritten.
POSITIONAL_MIN_RULES = 32
XTABLES_WAIT = "5"
PROBE_COMMENT = "svc2rules-probe"
_GENERATION = re.compile(r"svc2rules generation ([A-Za-z0-9-]+)")
_LINE = re.compile(r"(?:line:? |line )(\d+)")
_NAMED_CHAIN = re.compile(r"[Cc]hain [`'\"]?([A-Za-z0-9_.-]+)")
_COMMENT = re.compile(r'--comment "?([a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]+)?)')

Chains = dict[str, list[str]]


@dataclass
class Desired:
    plan: Plan
    options: RenderOptions[None]
    names: ChainNames
    tables: dict[str, Chains]
    jumps: dict[str, list[tuple[str, str]]]
    udp: dict[str, dict[str, Any]]
    # With the Services' fingerprints: the state entries the next run plans per Service from,
    # and the chains the Services own (the state keeps them in each Service's record).
    by_service: dict[str, Any] | None = None
    owned_chains: dict[str, set[str]] = field(default_factory=dict)
    _origins: dict[str, str] | None = None

    def origins(self) -> dict[str, str]:
        """Chain -> `ns/svc:port`, computed only when an error needs it."""
        if self._origins is None:
            n = self.names
            out: dict[str, str] = {}
            for sp in self.plan.for_family(IPFamily.IPv4):
                key = str(sp.key)
                for chain in (n.cluster_policy(sp), n.local_policy(sp), n.external(sp), n.firewall_chain(sp)):
                    out[chain] = key
                for ep in sp.reachable_endpoints:
                    out[n.endpoint(sp, ep)] = key
            self._origins = out
        return self._origins


@dataclass
class Section:
    table: str
    lines: list[str] = field(default_factory=list)
    touched: int = 0
    full: bool = False
    deferred: list[str] = field(default_factory=list)  # -X lines, after everything else


def _norm(spec: str) -> str:
    try:
        return " ".join(shlex.split(spec))
    except ValueError:
        return spec


def _list_argv(table: str, chain: str) -> list[str]:
    return ["iptables", "-w", XTABLES_WAIT, "-t", table, "-S", chain]


def _listed_rules(result: Result, chain: str) -> list[str] | None:
    """The rules of `chain` as its listing (_list_argv) printed them, or None if it failed."""
    if not result.ok:
        return None
    return [line[len(f"-A {chain} ") :] for line in result.stdout.splitlines() if line.startswith("-A ")]


def _chain_of(line: str) -> str | None:
    parts = line.split(None, 2)
    if len(parts) >= 2 and parts[0] in ("-A", "-I", "-R", "-D", "-X", "-F", "-N"):
        return parts[1]
    if line.startswith(":"):
        return line[1:].split()[0]
    return None


class IptablesState(BaseState, total=False):
    prefix: str
    tables: dict[str, dict[str, str]]  # table -> chain -> its rules, one per line
    jumps: dict[str, list[list[str]]]  # table -> [built-in chain, spec]
    jumps_live: dict[str, dict[str, list[str]]]  # read back: table -> built-in chain -> specs
    groups: dict[str, str]
    ctx: str
    totals: dict[str, int]
    segments: dict[str, Any]
    owned: dict[str, Any]


@dataclass
class IptablesChange(Change["Desired", IptablesState]):
    # The tables as the state had them (validation checks references against them).
    old_tables: dict[str, dict[str, str]] = field(default_factory=dict)
    # A full load: create the built-in chains first (a chain-less restore cannot).
    prep: bool = False


class IptablesApplier(IncrementalApplier["Desired", IptablesState, IptablesChange]):
    name = "iptables"
    bulk_state_keys = ("tables", "udp", "groups", "segments", "owned")

    def __init__(self, options: RenderOptions[None]) -> None:
        super().__init__(options)
        self.names = ChainNames(options.chain_prefix)

    # -- what we want ----------------------------------------------------------------------

    def marker_chain(self) -> str:
        return self.names.applied_marker

    def desired(self, plan: Plan) -> Desired:
        return self._desired(plan, None)

    def desired_with_services(self, plan: Plan, services: dict[str, str]) -> Desired:
        return self._desired(plan, services)

    def _desired(self, plan: Plan, services: dict[str, str] | None) -> Desired:
        """The tables for a plan; given the Services' fingerprints (`namespace/name` -> hex),
        also what the state needs to plan the next run Service by Service."""
        options = self.options
        by_service: dict[str, Any] | None = None
        owned_chains: dict[str, set[str]] = {}
        if services is None:
            tables, _ = build_tables(plan, options)
        else:
            tables, parts = split_by_service(plan, options)
            by_service = _by_service_state(plan, options, services, parts)
            owned_chains = {t: {c for p in parts.values() for c in p.chains.get(t, {})} for t in TABLE_ORDER}
        out: dict[str, Chains] = {}
        jumps: dict[str, list[tuple[str, str]]] = {}
        for table in tables:
            chains: Chains = {c: [] for c in table.chains}
            for rule in table.rules:
                chains[rule.chain].append(rule.spec)
            out[table.name] = chains
            jumps[table.name] = [(j.chain, j.spec) for j in table.jumps] if options.jumps else []
        udp = udp_facts(plan, plan.for_family(IPFamily.IPv4))
        return Desired(plan, options, self.names, out, jumps, udp, by_service, owned_chains)

    def sysctls(self, plan: Plan) -> dict[str, str]:
        return _sysctls(plan.config, sum(1 for sp in plan.service_ports if sp.node_port))

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the kernel ----------------------------------------------------------------

    def _list_chain(self, runner: Runner, table: str, chain: str) -> list[str] | None:
        return _listed_rules(runner.run(_list_argv(table, chain)), chain)

    def marker(self, runner: Runner, state: IptablesState | None) -> str | None:
        if state is not None and state.get("prefix"):
            self.names = ChainNames(state["prefix"]) if state["prefix"] != self.names.prefix else self.names
        seen = set()
        for table in TABLE_ORDER:
            rules = self._list_chain(runner, table, self.marker_chain())
            match = _GENERATION.search(" ".join(rules or []))
            seen.add(match.group(1) if match else None)
        if len(seen) != 1:
            return "mixed"
        return seen.pop()

    def _our_jumps(self, runner: Runner, tables: Iterable[str]) -> dict[str, dict[str, list[str]]]:
        """Rules in built-in chains that jump to one of our chains, as the kernel prints them."""
        wanted = [(table, chain) for table in tables for chain in BUILTIN_CHAINS[table]]
        # Listed at once: seven listings one after the other cost more than the rest of a
        # one-Service plan.
        results = runner.run_many([_list_argv(table, chain) for table, chain in wanted])
        out: dict[str, dict[str, list[str]]] = {table: {} for table in tables}
        for (table, chain), result in zip(wanted, results, strict=True):
            ours = [r for r in _listed_rules(result, chain) or [] if self._targets_us(r)]
            if ours:
                out[table][chain] = ours
        return out

    def quick_check(self, runner: Runner, state: IptablesState) -> bool:
        """Our jumps from the built-in chains are where foreign tools interfere (a firewall
        reload flushing INPUT); the marker covers our own chains."""
        live = self._our_jumps(runner, TABLE_ORDER)
        for table in TABLE_ORDER:
            wanted: dict[str, list[str]] = {}
            for chain, spec in state.get("jumps", {}).get(table, []):
                wanted.setdefault(chain, []).append(_norm(spec))
            have = {c: sorted(_norm(s) for s in specs) for c, specs in live.get(table, {}).items()}
            if have != {c: sorted(specs) for c, specs in wanted.items()}:
                return False
        return True

    def _targets_us(self, spec: str) -> bool:
        words = spec.split()
        for i, word in enumerate(words[:-1]):
            if word in ("-j", "--jump", "-g", "--goto") and self.names.owns(words[i + 1]):
                return True
        return False

    def read_live(self, runner: Runner) -> IptablesState | None:
        tables: dict[str, dict[str, str]] = {}
        jumps_live: dict[str, dict[str, list[str]]] = {}
        for table in TABLE_ORDER:
            result = runner.run(["iptables-save", "-t", table])
            chains: Chains = {}
            live_jumps: dict[str, list[str]] = {}
            for line in result.stdout.splitlines() if result.ok else []:
                if line.startswith(":") and self.names.owns(line[1:].split()[0]):
                    chains.setdefault(line[1:].split()[0], [])
                elif line.startswith("-A "):
                    _, chain, spec = line.split(" ", 2)
                    if self.names.owns(chain):
                        chains.setdefault(chain, []).append(spec)
                    elif self._targets_us(spec):
                        live_jumps.setdefault(chain, []).append(spec)
            tables[table] = {c: "\n".join(r) for c, r in chains.items()}
            jumps_live[table] = live_jumps
        return {
            "backend": self.name,
            "generation": None,
            "prefix": self.names.prefix,
            "tables": tables,
            "jumps_live": jumps_live,
            "udp": {},
        }

    # -- planning --------------------------------------------------------------------------

    def plan_change(
        self, runner: Runner, old: IptablesState | None, trusted: bool, desired: Desired, generation: str
    ) -> IptablesChange:
        self.names = desired.names
        marker = self.marker_chain()
        new_tables: dict[str, Chains] = {}
        for table in TABLE_ORDER:
            chains = dict(desired.tables.get(table, {}))
            chains[marker] = [_marker_rule(generation)]
            new_tables[table] = chains
        by_service = desired.by_service
        # Chains a Service owns are kept with it (by_service["owned"]), the rest here.
        owned = desired.owned_chains
        state_tables = {
            t: {c: "\n".join(r) for c, r in new_tables[t].items() if c not in owned.get(t, ())}
            for t in TABLE_ORDER
        }
        flat = _flat(old)
        change = self._change(
            runner, flat, trusted, desired, generation, new_tables, state_tables, None, by_service
        )
        if change.kind == "none" and by_service is not None and flat is not None:
            # Nothing to load, but the state learns its per-Service form (from an older one).
            kept = {
                t: {c: v for c, v in chains.items() if c not in owned.get(t, ())}
                for t, chains in flat["tables"].items()
            }
            change.state_update = {**by_service, "tables": kept}
        return change

    def _change(
        self,
        runner: Runner,
        old: dict[str, Any] | None,
        trusted: bool,
        desired: Desired,
        generation: str,
        new_tables: dict[str, Chains],
        state_tables: dict[str, dict[str, str]],
        removable: dict[str, list[str]] | None,
        by_service: dict[str, Any] | None,
    ) -> IptablesChange:
        """The write turning `old` into `state_tables`. `new_tables` holds the chains to compare
        (all of them, or with `removable` only those that may have changed, plus the chains
        that may have gone)."""
        marker = self.marker_chain()
        if trusted and old is not None:
            live_jumps = self._our_jumps(runner, TABLE_ORDER)
        else:
            live_jumps = (old or {}).get("jumps_live", {})
        old_tables: dict[str, dict[str, str]] = (old or {}).get("tables", {})
        full = not trusted

        sections: list[Section] = []
        counts = {"written": 0, "edited": 0, "removed": 0, "jumps": 0}
        for table in TABLE_ORDER:
            section = Section(table, full=full)
            old_chains = old_tables.get(table, {})
            gone = removable.get(table, []) if removable is not None else None
            self._section(section, old_chains, new_tables[table], full, counts, marker, runner, gone)
            self._jump_fixes(section, live_jumps.get(table, {}), desired.jumps.get(table, []), counts)
            sections.append(section)

        real_change = any(s.touched for s in sections) or counts["jumps"]
        new_state = {
            "backend": self.name,
            "generation": generation,
            "prefix": self.names.prefix,
            "tables": state_tables,
            "jumps": {t: [list(j) for j in desired.jumps.get(t, [])] for t in TABLE_ORDER},
            "udp": desired.udp,
            **(by_service or {}),
        }
        if not real_change and trusted:
            return IptablesChange(ChangeKind.NONE, "", "no changes", None, state_update=by_service)
        lines: list[str] = []
        for section in sections:
            big = section.full or section.touched > ALL_CHAINS_THRESHOLD
            lines.append(f"*{section.table}")
            if big:
                lines.append("-S")
            lines.extend(section.lines)
            lines.append("COMMIT")
        payload = "\n".join(lines) + "\n"
        kind = ChangeKind.FULL if full else ChangeKind.INCREMENTAL
        summary = (
            f"{kind}: {counts['written']} chain(s) written, {counts['edited']} rule(s) edited in place, "
            f"{counts['removed']} chain(s) removed, {counts['jumps']} jump(s) fixed"
        )
        return IptablesChange(
            kind, payload, summary, cast(IptablesState, new_state), desired, old_tables=old_tables, prep=full
        )

    # -- planning from an incremental compile ------------------------------------------------

    def plan_services(
        self,
        runner: Runner,
        old: IptablesState,
        compiled: IncrementalCompile,
        generation: str,
    ) -> IptablesChange | None:
        """The change from the changed Services alone, or None when it needs the whole plan:
        the state has no per-Service entries, or something every Service's rules depend on
        changed (config, options, code, endpoint comments).

        The state keeps what each Service had loaded (its chains, its share of the shared
        chains, its UDP ports and counts), so only the new versions are rendered."""
        options = self.options
        old_groups, segments, owned = old.get("groups"), old.get("segments"), old.get("owned")
        totals, tables = old.get("totals"), old.get("tables")
        if (
            not isinstance(old_groups, dict)
            or not isinstance(segments, dict)
            or not isinstance(owned, dict)
            or not isinstance(totals, dict)
            or not isinstance(tables, dict)
        ):
            return None
        entries = {entry.name: entry for entry in compiled.services}
        groups = {name: entry.fingerprint.hex() for name, entry in entries.items()}
        changed = [name for name, fp in groups.items() if old_groups.get(name) != fp]
        changed += [name for name in old_groups if name not in groups]
        before: dict[str, _Record] = {}
        for name in changed:
            if name in old_groups:
                record = _Record.read(owned.get(name))
                if record is None:
                    return None
                before[name] = record
        config = compiled.config
        after_resolutions = {name: compiled.resolution(entries[name]) for name in changed if name in entries}
        endpoints = totals.get("endpoints", 0) - sum(r.endpoints for r in before.values())
        endpoints += sum(_totals(r.service_ports)["endpoints"] for r in after_resolutions.values())
        comments_on = _endpoint_comments(endpoints, options)
        ctx = service_context(config, options, comments_on)
        if ctx != old.get("ctx"):
            return None
        new_parts = {
            name: service_part(config, r.service_ports, options, endpoint_comments=comments_on)
            for name, r in after_resolutions.items()
        }
        after = {name: _Record.of(new_parts[name], r.service_ports) for name, r in after_resolutions.items()}
        new_totals = {
            "endpoints": endpoints,
            "nodeports": totals.get("nodeports", 0)
            - sum(r.nodeports for r in before.values())
            + sum(r.nodeports for r in after.values()),
        }
        heads = head_lengths(config, options)
        marker = self.marker_chain()
        new_tables: dict[str, Chains] = {}
        old_view: dict[str, dict[str, str]] = {}
        state_tables: dict[str, dict[str, str]] = {}
        removable: dict[str, list[str]] = {}
        new_segments: dict[str, dict[str, dict[str, int]]] = {}
        changed_set = set(changed)
        origins: dict[str, str] = {}
        for table in TABLE_ORDER:
            shared_old: dict[str, str] = tables.get(table, {})
            # What the write compares against: the shared chains, and the changed Services'.
            view = dict(shared_old)
            touched: Chains = {}
            for name, record in before.items():
                for chain, text in record.chains.get(table, {}).items():
                    view[chain] = text
                    origins[chain] = name
            for p in new_parts.values():
                touched.update(p.chains.get(table, {}))
            chains = dict(shared_old)  # the state's shared chains, after the write
            table_segments = dict(segments.get(table, {}))
            shared = dict.fromkeys(
                [c for c, counts in table_segments.items() if changed_set.intersection(counts)]
                + [c for p in new_parts.values() for c in p.shared.get(table, {})]
            )
            for chain in shared:
                spliced = _splice(
                    shared_old.get(chain, ""),
                    table_segments.get(chain, {}),
                    heads.get(table, {}).get(chain, 0),
                    changed_set,
                    {
                        n: p.shared[table][chain]
                        for n, p in new_parts.items()
                        if chain in p.shared.get(table, {})
                    },
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
            touched[marker] = [_marker_rule(generation)]
            chains[marker] = touched[marker][0]
            new_tables[table] = touched
            old_view[table] = view
            state_tables[table] = chains
            removable[table] = [
                c for r in before.values() for c in r.chains.get(table, {}) if c not in touched
            ]
            new_segments[table] = table_segments
        new_owned = dict(owned)
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

        udp = dict(old.get("udp", {}))
        for record in before.values():
            for key in record.udp:
                udp.pop(key, None)
        for resolution in after_resolutions.values():
            udp.update(udp_facts_of(_ipv4(resolution.service_ports)))
        ports = tuple(sp for r in after_resolutions.values() for sp in _ipv4(r.service_ports))
        jumps = {t: [(c, s) for c, s in old.get("jumps", {}).get(t, [])] for t in TABLE_ORDER}
        desired = Desired(Plan(config, ports, ()), options, self.names, new_tables, jumps, udp, by_service)
        desired.origins().update(origins)
        change = self._change(
            runner,
            {**old, "tables": old_view},
            True,
            desired,
            generation,
            new_tables,
            state_tables,
            removable,
            by_service,
        )
        change.sysctls = _sysctls(config, new_totals["nodeports"])
        change.touched = {
            "tables": {t: [c for c in new_tables[t] if c in state_tables[t]] for t in TABLE_ORDER}
        }
        return change

    def _section(
        self,
        section: Section,
        old: dict[str, str],
        new: Chains,
        full: bool,
        counts: dict[str, int],
        marker: str,
        runner: Runner,
        removable: list[str] | None = None,
    ) -> None:
        """`new` holds the chains to write or compare; `removable` the chains that may have gone
        (None: every old chain not in `new`)."""
        declare: list[str] = []
        appends: list[str] = []
        edits: list[str] = []
        if removable is None:
            removed = [c for c in old if c not in new]
        else:
            removed = [c for c in dict.fromkeys(removable) if c in old and c not in new]
        for chain, rules in new.items():
            before = old.get(chain)
            if before is not None and not full and before == "\n".join(rules):
                continue
            if chain != marker:
                section.touched += 1
            old_rules = before.split("\n") if before else []
            if before is not None and not full and len(old_rules) > POSITIONAL_MIN_RULES:
                ops = _positional(chain, old_rules, rules)
                # Positions come from the state: edit in place only if the kernel's chain still
                # has exactly the rules the state says (nobody inserted into our chain).
                live = self._list_chain(runner, section.table, chain) if len(ops) < len(rules) // 2 else None
                if live is not None and len(live) == len(old_rules):
                    edits.extend(ops)
                    counts["edited"] += len(ops)
                    continue
            declare.append(f":{chain} - [0:0]")
            appends.extend(f"-A {chain} {spec}" for spec in rules)
            if chain != marker:
                counts["written"] += 1
        section.touched += len(removed)
        counts["removed"] += len(removed)
        section.lines.extend(declare)
        # Flush what goes away first, so its references to other chains are gone when -X runs.
        section.lines.extend(f":{chain} - [0:0]" for chain in removed)
        section.lines.extend(appends)
        section.lines.extend(edits)
        section.deferred = [f"-X {chain}" for chain in removed]

    def _jump_fixes(
        self,
        section: Section,
        live: dict[str, list[str]],
        wanted: list[tuple[str, str]],
        counts: dict[str, int],
    ) -> None:
        by_chain: dict[str, list[str]] = {}
        for chain, spec in wanted:
            by_chain.setdefault(chain, []).append(spec)
        fixes: list[str] = []
        for chain in sorted(set(by_chain) | set(live)):
            have = sorted(_norm(s) for s in live.get(chain, []))
            want = sorted(_norm(s) for s in by_chain.get(chain, []))
            if have == want:
                continue
            counts["jumps"] += 1
            fixes.extend(f"-D {chain} {spec}" for spec in live.get(chain, []))
            fixes.extend(f"-I {chain} 1 {spec}" for spec in by_chain.get(chain, []))
        section.lines.extend(fixes)
        section.lines.extend(section.deferred)

    def plan_cleanup(self, runner: Runner, old: IptablesState | None) -> IptablesChange:
        # Cleanup always reads the kernel: it must remove what we own even without a state.
        live = self.read_live(runner) or {}
        tables: dict[str, dict[str, str]] = live.get("tables", {})
        jumps: dict[str, dict[str, list[str]]] = live.get("jumps_live", {})
        lines: list[str] = []
        count = 0
        for table in TABLE_ORDER:
            chains = list(tables.get(table, {}))
            table_jumps = jumps.get(table, {})
            if not chains and not table_jumps:
                continue
            lines.append(f"*{table}")
            if len(chains) > ALL_CHAINS_THRESHOLD:
                lines.append("-S")
            lines.extend(f"-D {chain} {spec}" for chain, specs in table_jumps.items() for spec in specs)
            lines.extend(f":{chain} - [0:0]" for chain in chains)
            lines.extend(f"-X {chain}" for chain in chains)
            lines.append("COMMIT")
            count += len(chains)
        if not lines:
            return IptablesChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        return IptablesChange(
            ChangeKind.CLEANUP, "\n".join(lines) + "\n", f"{count} chain(s) and their jumps removed", None
        )

    # -- validation and loading ------------------------------------------------------------

    def validate(self, runner: Runner, change: IptablesChange) -> None:
        lines = change.payload.splitlines()
        if change.kind != "cleanup":
            self._check_references(change, lines)
        tested = _without_big_nat(lines)
        result = runner.run(
            ["iptables-restore", "-w", XTABLES_WAIT, "--noflush", "--test"], stdin="\n".join(tested) + "\n"
        )
        if not result.ok:
            self._fail("iptables-restore --test refused the ruleset", result, tested, change)
        if change.kind == "cleanup":
            return
        trial = self._trial_payload(change, lines)
        if trial is None:
            return
        self._trial_load(runner, trial, change)

    def _check_references(self, change: IptablesChange, lines: list[str]) -> None:
        """`--test` does not resolve chain references: every one of ours must exist after the write."""
        prefix = self.names.prefix + "-"
        old = change.old_tables
        table = ""
        exists: set[str] = set()
        for number, line in enumerate(lines, 1):
            if line.startswith("*"):
                table = line[1:]
                end = lines.index("COMMIT", number - 1)
                body = lines[number:end]
                # Chains declared anywhere in a section exist for its whole transaction.
                exists = set(old.get(table, {})) if change.kind == "incremental" else set()
                exists |= {ln[1:].split()[0] for ln in body if ln.startswith(":")}
                exists -= {ln.split()[1] for ln in body if ln.startswith("-X ")}
                continue
            words = line.split()
            if not words or words[0] not in ("-A", "-I", "-R"):
                continue
            targets = [words[1]] + [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")]
            for target in targets:
                if target.startswith(prefix) and target not in exists:
                    raise ApplyError(
                        self._describe(
                            f"chain {target} does not exist in table {table} (the kernel would refuse it)",
                            number,
                            line,
                            change,
                        )
                    )

    def _trial_payload(self, change: IptablesChange, lines: list[str]) -> str | None:
        """What to load in a scratch namespace: the filter section (written second, so it must
        not fail once nat went in), with placeholders standing in for the host's chains it edits."""
        out: list[str] = []
        old = change.old_tables
        section: list[str] = []
        table = ""
        for line in lines:
            if line.startswith("*"):
                table, section = line[1:], []
                continue
            if line != "COMMIT":
                section.append(line)
                continue
            if table == "nat":
                # nat is written first: if the kernel refuses it, nothing has changed yet.
                continue
            if all(_chain_of(ln) == self.marker_chain() for ln in section):
                # Only our marker's rule, which every write loads and --test has parsed: a
                # scratch namespace would cost more than anything it could find.
                continue
            declared = {ln[1:].split()[0] for ln in section if ln.startswith(":")}
            body = [ln for ln in section if not ln.startswith("-D ") or ln.split()[2].isdigit()]
            body = [ln for ln in body if not (ln.startswith("-X ") and ln.split()[1] not in declared)]
            needed: dict[str, int] = {}
            prefix = self.names.prefix + "-"
            for ln in body:
                words = ln.split()
                if not words or words[0] not in ("-A", "-I", "-R", "-D"):
                    continue
                chain = words[1]
                if chain.startswith(prefix) and chain not in declared:
                    needed[chain] = len(old.get(table, {}).get(chain, "").split("\n"))
                for i, w in enumerate(words[:-1]):
                    if w in ("-j", "-g") and words[i + 1].startswith(prefix) and words[i + 1] not in declared:
                        needed.setdefault(words[i + 1], 0)
            out.append(f"*{table}")
            if len(needed) + len(declared) > ALL_CHAINS_THRESHOLD:
                out.append("-S")
            out.extend(f":{chain} - [0:0]" for chain in needed)
            for chain, count in needed.items():
                out.extend(f"-A {chain} -j RETURN" for _ in range(count))
            out.extend(ln for ln in body if ln != "-S")
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else None

    def _trial_load(self, runner: Runner, trial: str, change: IptablesChange) -> None:
        with tempfile.TemporaryDirectory(prefix="svc2rules-trial-") as tmp:
            prep_path = os.path.join(tmp, "prep")
            trial_path = os.path.join(tmp, "trial")
            with open(prep_path, "w", encoding="ascii") as fh:
                fh.write(_prep_payload())
            with open(trial_path, "w", encoding="utf-8") as fh:
                fh.write(trial)
            script = (
                'iptables-restore -w --noflush < "$1" || exit 99; exec iptables-restore -w --noflush < "$2"'
            )
            result = runner.run(["unshare", "--net", "--", "sh", "-c", script, "sh", prep_path, trial_path])
        if result.returncode == 99 or "unshare" in result.stderr[:40]:
            raise ApplyError(
                f"cannot create a scratch network namespace to validate in: {first_line(result.stderr)}"
            )
        if not result.ok:
            self._fail(
                "the kernel refused the ruleset in a scratch namespace", result, trial.splitlines(), change
            )

    def load(self, runner: Runner, change: IptablesChange) -> None:
        if change.prep:
            result = runner.run(
                ["iptables-restore", "-w", XTABLES_WAIT, "--noflush"], stdin=_prep_payload(), loader=True
            )
            if not result.ok:
                self._fail("iptables-restore refused to create the built-in chains", result, [], change)
        result = runner.run(
            ["iptables-restore", "-w", XTABLES_WAIT, "--noflush"], stdin=change.payload, loader=True
        )
        if not result.ok:
            self._fail(
                "the kernel refused the ruleset; the host keeps its previous rules",
                result,
                change.payload.splitlines(),
                change,
            )

    def _fail(self, what: str, result: Result, lines: list[str], change: IptablesChange) -> None:
        message = first_line(result.stderr or result.stdout)
        if "xtables lock" in message or "holding the xtables lock" in message:
            raise LockBusyError(f"the xtables lock is busy ({message}); retry later")
        match = _LINE.search(result.stderr)
        if match and lines:
            number = int(match.group(1))
            if 1 <= number <= len(lines):
                number = _culprit(lines, number, message)
                raise ApplyError(self._describe(f"{what}: {message}", number, lines[number - 1], change))
        raise ApplyError(f"{what}: {message}")

    def _describe(self, what: str, number: int, line: str, change: IptablesChange) -> str:
        origin = self._origin(line, change)
        shown = line if len(line) <= 200 else line[:197] + "..."
        where = f" (from Service {origin})" if origin else ""
        return f"{what}; line {number}: {shown}{where}"

    def _origin(self, line: str, change: IptablesChange) -> str | None:
        desired = change.desired
        match = _COMMENT.search(line)
        if match:
            return match.group(1)
        chain = _chain_of(line)
        if desired is not None and chain:
            found = desired.origins().get(chain)
            if found:
                return found
            for word in line.split():
                if word in desired.origins():
                    return desired.origins()[word]
        return None

    # -- diff ------------------------------------------------------------------------------

    def dump_live(self, runner: Runner) -> str:
        out: list[str] = []
        for table in TABLE_ORDER:
            result = runner.run(["iptables-save", "-t", table])
            out.extend(self._owned_lines(table, result.stdout if result.ok else ""))
        return "\n".join(out) + "\n" if out else ""

    def _owned_lines(self, table: str, save: str, skip_marker: bool = True) -> list[str]:
        marker = self.marker_chain()
        declared: list[str] = []
        rules: list[str] = []
        for line in save.splitlines():
            if line.startswith(":") and self.names.owns(line[1:].split()[0]):
                name = line[1:].split()[0]
                if not (skip_marker and name == marker):
                    declared.append(f"{table}: :{name}")
            elif line.startswith("-A "):
                _, chain, spec = line.split(" ", 2)
                if self.names.owns(chain):
                    if not (skip_marker and chain == marker):
                        rules.append(f"{table}: {line}")
                elif self._targets_us(spec):
                    rules.append(f"{table}: {line}")
        return sorted(declared) + rules

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        """The compiled objects in the kernel's spelling: loaded into a scratch namespace and
        saved back, so the diff shows real differences, not formatting."""
        lines: list[str] = []
        for table in TABLE_ORDER:
            chains = desired.tables.get(table, {})
            lines.append(f"*{table}")
            if len(chains) > ALL_CHAINS_THRESHOLD:
                lines.append("-S")
            lines.extend(f":{c} - [0:0]" for c in chains)
            lines.extend(f"-A {c} {s}" for c, rules in chains.items() for s in rules)
            lines.extend(f"-I {c} 1 {s}" for c, s in desired.jumps.get(table, []))
            lines.append("COMMIT")
        with tempfile.TemporaryDirectory(prefix="svc2rules-diff-") as tmp:
            prep_path = os.path.join(tmp, "prep")
            path = os.path.join(tmp, "rules")
            with open(prep_path, "w", encoding="ascii") as fh:
                fh.write(_prep_payload())
            with open(path, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
            script = (
                'iptables-restore -w --noflush < "$1" && iptables-restore -w --noflush < "$2" >/dev/null && '
                "iptables-save -t nat && echo '#--split--' && iptables-save -t filter"
            )
            result = runner.run(["unshare", "--net", "--", "sh", "-c", script, "sh", prep_path, path])
        if not result.ok:
            raise ApplyError(
                f"cannot load the compiled rules in a scratch namespace: {first_line(result.stderr)}"
            )
        nat, _, filt = result.stdout.partition("#--split--")
        out = self._owned_lines("nat", nat) + self._owned_lines("filter", filt)
        return "\n".join(out) + "\n" if out else ""


def _without_big_nat(lines: list[str]) -> list[str]:
    """The payload for `--test`, minus a big nat section: parsing 10k Services' nat rules
    twice costs ~25 s, and nat needs no test run: it is written first, and an input the
    restore refuses (at parse or at commit) leaves that table, and so the host, unchanged."""
    if "*nat" not in lines:
        return lines
    start = lines.index("*nat")
    end = lines.index("COMMIT", start)
    if lines[start + 1 : start + 2] != ["-S"]:  # not big (see ALL_CHAINS_THRESHOLD)
        return lines
    return lines[:start] + lines[end + 1 :]


def _culprit(lines: list[str], number: int, message: str) -> int:
    """A refusal found at commit time is reported on the COMMIT line; when the kernel's
    message names a chain, point at the line of that section that uses it instead."""
    if lines[number - 1] != "COMMIT":
        return number
    named = _NAMED_CHAIN.search(message)
    if not named:
        return number
    chain = named.group(1)
    start = number - 1
    while start > 0 and not lines[start - 1].startswith("*"):
        start -= 1
    for i in range(start, number - 1):
        words = lines[i].split()
        if chain in words[1:]:
            return i + 1
    return number


def _positional(chain: str, old: list[str], new: list[str]) -> list[str]:
    """`-R`/`-D`/`-I` edits turning `old` into `new`, last position first so that earlier
    positions stay valid while the edits run."""
    start = 0
    while start < len(old) and start < len(new) and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    matcher = difflib.SequenceMatcher(None, old[start:end_old], new[start:end_new], autojunk=False)
    ops: list[str] = []
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        i1, i2, j1, j2 = i1 + start, i2 + start, j1 + start, j2 + start
        common = min(i2 - i1, j2 - j1)
        chunk = [f"-R {chain} {i1 + k + 1} {new[j1 + k]}" for k in range(common)]
        if i2 - i1 > common:
            chunk += [f"-D {chain} {k + 1}" for k in reversed(range(i1 + common, i2))]
        else:
            chunk += [f"-I {chain} {i1 + (k - j1) + 1} {new[k]}" for k in range(j1 + common, j2)]
        ops.extend(chunk)
    return ops


def _prep_payload() -> str:
    """Creates the tables and built-in chains our jumps need, changing nothing else: a probe
    rule appended and deleted in the same transaction (see module doc)."""
    lines: list[str] = []
    for table in TABLE_ORDER:
        lines.append(f"*{table}")
        for chain in BUILTIN_CHAINS[table]:
            rule = f'{chain} -m comment --comment "{PROBE_COMMENT}" -j RETURN'
            lines += [f"-A {rule}", f"-D {rule}"]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# -- per-Service planning ------------------------------------------------------------------------


def _marker_rule(generation: str) -> str:
    return f'-m comment --comment "svc2rules generation {generation}" -j RETURN'


def _sysctls(config: ProxyConfig, node_ports: int) -> dict[str, str]:
    wanted = {"net.ipv4.ip_forward": "1"}
    if config.localhost_nodeports and node_ports:
        wanted["net.ipv4.conf.all.route_localnet"] = "1"
    return wanted


def _ipv4(ports: Iterable[ServicePort]) -> tuple[ServicePort, ...]:
    return tuple(sp for sp in ports if sp.family == IPFamily.IPv4)


def _endpoint_comments(total_endpoints: int, options: RenderOptions[None]) -> bool:
    """render.endpoint_comments, from the plan's total of IPv4 endpoints."""
    return options.comments.per_endpoint(total_endpoints)


def _totals(ports: Iterable[ServicePort]) -> dict[str, int]:
    ports = tuple(ports)
    return {
        "endpoints": sum(len(sp.reachable_endpoints) for sp in _ipv4(ports)),
        "nodeports": sum(1 for sp in ports if sp.node_port),
    }


def service_context(config: ProxyConfig, options: RenderOptions[None], endpoint_comments: bool) -> str:
    """Everything every Service's rules depend on besides its own objects: a Service's part of
    the state is reused only while this is unchanged."""
    parts = (
        code_identity(),
        config.model_dump_json(),
        options.chain_prefix,
        options.comments,
        options.jumps,
        options.backend,
        endpoint_comments,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _by_service_state(
    plan: Plan, options: RenderOptions[None], services: dict[str, str], parts: dict[str, ServicePart]
) -> dict[str, Any]:
    totals = _totals(plan.service_ports)
    segments: dict[str, dict[str, dict[str, int]]] = {t: {} for t in TABLE_ORDER}
    for name, part in parts.items():
        for table, shared in part.shared.items():
            for chain, rules in shared.items():
                segments[table].setdefault(chain, {})[name] = len(rules)
    by_name: dict[str, list[ServicePort]] = {}
    for sp in plan.service_ports:
        by_name.setdefault(f"{sp.key.namespace}/{sp.key.name}", []).append(sp)
    # Every Service has a record, even one with no IPv4 port (headless, ExternalName, IPv6).
    owned = {
        name: _Record.of(parts.get(name) or ServicePart(), by_name.get(name, [])).write() for name in services
    }
    return {
        "groups": services,
        "ctx": service_context(plan.config, options, _endpoint_comments(totals["endpoints"], options)),
        "totals": totals,
        "segments": segments,
        "owned": owned,
    }


@dataclass(frozen=True)
class _Record:
    """What one Service has loaded, as the state keeps it: its own chains, its UDP ports (for
    conntrack cleanup) and its counts (endpoint comments, route_localnet)."""

    chains: dict[str, dict[str, str]]  # table -> chain -> rules
    udp: tuple[str, ...]
    endpoints: int
    nodeports: int

    @classmethod
    def of(cls, part: ServicePart, ports: Sequence[ServicePort]) -> _Record:
        totals = _totals(ports)
        chains = {t: {c: "\n".join(r) for c, r in own.items()} for t, own in part.chains.items()}
        return cls(chains, tuple(udp_facts_of(_ipv4(ports))), totals["endpoints"], totals["nodeports"])

    def write(self) -> bytes:
        return marshal.dumps((self.chains, self.udp, self.endpoints, self.nodeports))

    @classmethod
    def read(cls, data: Any) -> _Record | None:
        if not isinstance(data, bytes):
            return None
        try:
            chains, udp, endpoints, nodeports = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None
        return cls(chains, tuple(udp), endpoints, nodeports)


def _flat(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A state whose tables hold every chain (the Services' own chains put back in)."""
    if old is None or not isinstance(old.get("owned"), dict):
        return None if old is None else dict(old)
    tables = {t: dict(chains) for t, chains in old.get("tables", {}).items()}
    for data in old["owned"].values():
        record = _Record.read(data)
        if record is None:
            continue
        for table, chains in record.chains.items():
            tables.setdefault(table, {}).update(chains)
    return {**old, "tables": tables}


def _service_key(name: str) -> tuple[str, str]:
    """Plan order of `namespace/name` (neither part contains a slash)."""
    namespace, _, service = name.partition("/")
    return namespace, service


def _splice(
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
