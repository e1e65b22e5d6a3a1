"""nftables applier: our table replaced in one `nft -f` transaction, or updated element by element.

The compiled script replaces `table ip <name>` whole in one transaction, so a refused or
interrupted load leaves the previous table untouched. The default layout keeps every
per-Service fact in map and set elements, so once the table's *skeleton* (chains, rules,
declarations: everything but elements) is unchanged, a change is a handful of
`delete element` / `add element` commands — ~10 ms at any size, where any command that
touches a chain makes `nft` read the whole table first (~1 s at 10k Services).

The state keeps the skeleton's hash and every element; the kernel carries the applied
generation in an empty set's comment (`nft list set` reads only that set).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, cast

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import BaseState, Change, ChangeKind, IncrementalApplier
from svc2rules.backends.nftables.grouped import CLAIM_COLLECTIONS
from svc2rules.backends.nftables.options import DEFAULT_LAYOUT, NftablesOptions
from svc2rules.backends.nftables.render import (
    build_table,
    element_comments,
    format_table,
    layout_name,
)
from svc2rules.backends.nftables.text import check_table_name
from svc2rules.compile import Compilation as IncrementalCompile
from svc2rules.compile.cache import code_identity
from svc2rules.config import ProxyConfig
from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.conntrack import udp_facts, udp_facts_of
from svc2rules.host.runner import Result, Runner, first_line
from svc2rules.ir import Plan, ServicePort
from svc2rules.resolve.plan import ServiceResolution

MARKER_SET = "applied-generation"
FAMILY = "ip"
_GENERATION = re.compile(r"svc2rules generation ([A-Za-z0-9-]+)")
_COLLECTION = re.compile(r"^\t(map|set) (\S+) \{$")
_BLOCK = re.compile(r"^\t(map|set|chain) (\S+) \{$")
_ERROR_LINE = re.compile(r":(\d+):\d+(?:-\d+)?: Error: (.*)")
_SERVICE = re.compile(r'comment "([a-z0-9.-]+/[a-z0-9.-]+(?::[a-z0-9-]+)?)')

Elements = dict[str, dict[str, str]]  # collection -> key -> element text


@dataclass
class Desired:
    plan: Plan
    table: str
    text: str | None  # None: planned from the changed Services alone (the skeleton is the state's)
    skeleton: str | None
    elements: Elements
    udp: dict[str, dict[str, Any]]
    # With the Services' fingerprints: the state entries the next run plans per Service from.
    by_service: dict[str, Any] | None = None
    # Planned per Service: the only elements that may differ from the state's (per collection).
    touched: dict[str, list[str]] | None = None


def element_key(text: str) -> str:
    """`key [comment "..."] [: value]` -> key (comments are quoted and never contain ' : ')."""
    for separator in (' comment "', " : "):
        cut = text.find(separator)
        if cut >= 0:
            text = text[:cut]
    return text


def split_script(text: str) -> tuple[str, Elements]:
    """The rendered script -> (skeleton without elements, elements per collection).

    Reads the template's fixed layout: a collection opens with `\tmap|set NAME {`, its
    elements sit one per line, indented three tabs, inside `\t\telements = {`.
    """
    skeleton: list[str] = []
    elements: Elements = {}
    current: dict[str, str] | None = None
    in_elements = False
    for line in text.splitlines():
        if in_elements:
            if line == "\t\t}":
                in_elements = False
            else:
                element = line.strip().rstrip(",")
                assert current is not None
                current[element_key(element)] = element
            continue
        match = _COLLECTION.match(line)
        if match:
            current = elements.setdefault(match.group(2), {})
        elif line == "\t\telements = {":
            in_elements = True
            continue
        skeleton.append(line)
    return "\n".join(skeleton), elements


def skeleton_blocks(skeleton: str) -> tuple[str, dict[str, str]]:
    """Skeleton -> (header: every line outside a set/map/chain, {"map NAME": block text}).

    Blocks are what can come and go incrementally (a new endpoint-count group is one map
    and one chain); the header is the table itself."""
    header: list[str] = []
    blocks: dict[str, str] = {}
    current: list[str] | None = None
    for line in skeleton.splitlines():
        if current is None:
            match = _BLOCK.match(line)
            if match:
                current = [line]
                name = f"{match.group(1)} {match.group(2)}"
                continue
            header.append(line)
        else:
            current.append(line)
            if line == "\t}":
                blocks[name] = "\n".join(current)
                current = None
    return "\n".join(line for line in header if line.strip()), blocks


def _sorted_blocks(lines: list[str]) -> str:
    """A listing with its sets, maps and chains in name order: the kernel lists them in
    creation order, which an incremental update changes without changing the ruleset."""
    head: list[str] = []
    tail: list[str] = []
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if current is not None:
            current.append(line)
            if line == "\t}":
                blocks.append(current)
                current = None
        elif _BLOCK.match(line):
            current = [line]
        elif not line.strip():
            continue
        elif blocks:
            tail.append(line)
        else:
            head.append(line)
    out = head + [line for block in sorted(blocks) for line in block] + tail
    return "\n".join(out) + "\n" if out else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class NftablesState(BaseState, total=False):
    table: str
    header: str
    blocks: dict[str, str]
    elements: Elements
    groups: dict[str, str]
    ctx: str
    totals: dict[str, int]
    shared: dict[str, dict[str, int]]
    facts: dict[str, Any]
    conflicts: bool


NftablesChange = Change["Desired", NftablesState]


class NftablesApplier(IncrementalApplier["Desired", NftablesState, NftablesChange]):
    name = "nftables"
    bulk_state_keys = ("elements", "udp", "groups", "shared", "facts")

    def __init__(self, options: RenderOptions[NftablesOptions]) -> None:
        super().__init__(options)
        self.table = check_table_name(options.table)

    def desired(self, plan: Plan) -> Desired:
        return self._desired(plan, None)

    def desired_with_services(self, plan: Plan, services: dict[str, str]) -> Desired:
        return self._desired(plan, services)

    def _desired(self, plan: Plan, services: dict[str, str] | None) -> Desired:
        """The table for a plan; given the Services' fingerprints (`namespace/name` -> hex),
        also what the state needs to plan the next run Service by Service."""
        options = self.options
        journal = _Journal() if services is not None and layout_name(options) == DEFAULT_LAYOUT else None
        table, _, layout = build_table(plan, options, observer=journal)
        text = format_table(table, layout, options)
        skeleton, elements = split_script(text)
        udp = udp_facts(plan, plan.for_family(IPFamily.IPv4))
        by_service = None
        if journal is not None and services is not None:
            endpoints = _endpoint_total(plan.service_ports)
            by_service = {
                "groups": services,
                "ctx": service_context(
                    plan.config, options, element_comments(plan.for_family(IPFamily.IPv4), options)
                ),
                "totals": {"endpoints": endpoints},
                **journal.state(),
            }
        return Desired(plan, self.table, text, skeleton, elements, udp, by_service)

    def sysctls(self, plan: Plan) -> dict[str, str]:
        # This layout never matches 127.0.0.0/8 NodePorts, so route_localnet is not needed.
        return {"net.ipv4.ip_forward": "1"}

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the kernel ----------------------------------------------------------------

    def marker(self, runner: Runner, state: NftablesState | None) -> str | None:
        if state is not None and state.get("table"):
            self.table = state["table"]
        result = runner.run(["nft", "list", "set", FAMILY, self.table, MARKER_SET])
        match = _GENERATION.search(result.stdout) if result.ok else None
        return match.group(1) if match else None

    # quick_check and read_live keep the contract's defaults: the table is ours whole (the
    # marker in it is the check), and without a trusted state we load the whole table, which
    # replaces whatever is there in the same transaction (reading it back: ~10 s at 10k).

    # -- planning --------------------------------------------------------------------------

    def _marker_commands(self, generation: str, replace: bool) -> list[str]:
        out = [f"delete set {FAMILY} {self.table} {MARKER_SET}"] if replace else []
        out.append(
            f"add set {FAMILY} {self.table} {MARKER_SET} "
            f'{{ type inet_service; comment "svc2rules generation {generation}"; }}'
        )
        return out

    def plan_change(
        self, runner: Runner, old: NftablesState | None, trusted: bool, desired: Desired, generation: str
    ) -> NftablesChange:
        self.table = desired.table
        old_blocks: dict[str, str] = (old or {}).get("blocks", {})
        blocks: dict[str, str] = {}
        if desired.skeleton is not None:
            header, blocks = skeleton_blocks(desired.skeleton)
            header_digest = _digest(header)
            block_hashes = {name: _digest(text) for name, text in blocks.items()}
        else:  # planned per Service: the skeleton is unchanged
            assert old is not None
            header_digest, block_hashes = old["header"], old_blocks
        new_state = {
            "backend": self.name,
            "generation": generation,
            "table": self.table,
            "header": header_digest,
            "blocks": block_hashes,
            "elements": desired.elements,
            "udp": desired.udp,
            **(desired.by_service or {}),
        }
        if (
            not trusted
            or old is None
            or old.get("table") != self.table
            or old.get("header") != new_state["header"]
            or any(old_blocks[name] != digest for name, digest in block_hashes.items() if name in old_blocks)
        ):
            assert desired.text is not None
            payload = desired.text + "\n".join(self._marker_commands(generation, replace=False)) + "\n"
            count = sum(len(e) for e in desired.elements.values())
            return NftablesChange(
                ChangeKind.FULL,
                payload,
                f"full: table {self.table} replaced ({count} elements)",
                cast(NftablesState, new_state),
                desired,
            )

        # Only whole blocks come or go (e.g. a new endpoint-count group): the transaction
        # deletes stale elements, then unused chains, then unused sets/maps; adds new
        # sets/maps, then chains (their rules name the maps), then elements (they name chains).
        gone_blocks = sorted(name for name in old_blocks if name not in block_hashes)
        new_blocks = [name for name in blocks if name not in old_blocks]
        gone_collections = {name.split(" ", 1)[1] for name in gone_blocks if not name.startswith("chain ")}
        deletes: list[str] = []
        adds: list[str] = []
        deleted = added = 0
        old_elements: Elements = old.get("elements", {})
        touched = desired.touched
        names = sorted(touched) if touched is not None else sorted(set(old_elements) | set(desired.elements))
        for name in names:
            before = old_elements.get(name, {})
            after = desired.elements.get(name, {})
            if touched is not None:
                keys = list(dict.fromkeys(touched[name]))
                gone = [k for k in keys if k in before and after.get(k) != before[k]]
                new = [after[k] for k in keys if k in after and before.get(k) != after[k]]
            else:
                gone = [k for k, text in before.items() if after.get(k) != text]
                new = [text for k, text in after.items() if before.get(k) != text]
            if gone and name not in gone_collections:
                deletes.append(f"delete element {FAMILY} {self.table} {name} {{ {', '.join(gone)} }}")
                deleted += len(gone)
            if new:
                adds.append(f"add element {FAMILY} {self.table} {name} {{ {', '.join(new)} }}")
                added += len(new)
        if not deletes and not adds and not gone_blocks and not new_blocks:
            return NftablesChange(ChangeKind.NONE, "", "no changes", None, state_update=desired.by_service)
        structure: list[str] = []
        structure += [
            f"delete {name.replace(' ', f' {FAMILY} {self.table} ', 1)}"
            for name in gone_blocks
            if name.startswith("chain ")
        ]
        structure += [
            f"delete {name.replace(' ', f' {FAMILY} {self.table} ', 1)}"
            for name in gone_blocks
            if not name.startswith("chain ")
        ]
        ordered = [n for n in new_blocks if not n.startswith("chain ")] + [
            n for n in new_blocks if n.startswith("chain ")
        ]
        if ordered:
            structure.append(f"table {FAMILY} {self.table} {{")
            structure += [blocks[name] for name in ordered]
            structure.append("}")
        commands = self._marker_commands(generation, replace=True) + deletes + structure + adds
        summary = f"incremental: {deleted} element(s) deleted, {added} element(s) added"
        if gone_blocks or new_blocks:
            summary += f", {len(new_blocks)} set/map/chain(s) added, {len(gone_blocks)} removed"
        return NftablesChange(
            ChangeKind.INCREMENTAL,
            "\n".join(commands) + "\n",
            summary,
            cast(NftablesState, new_state),
            desired,
        )

    # -- planning from an incremental compile ------------------------------------------------

    def plan_services(
        self,
        runner: Runner,
        old: NftablesState,
        compiled: IncrementalCompile,
        generation: str,
    ) -> NftablesChange | None:
        """The change from the changed Services alone, or None when it needs the whole plan:
        the state has no per-Service entries, something every Service's elements depend on
        changed, the previous version of a changed Service is unknown, two Services offer the
        same key differently, or the set of chains and maps the table needs changes."""
        options = self.options
        old_groups, elements, shared = old.get("groups"), old.get("elements"), old.get("shared")
        facts, totals = old.get("facts"), old.get("totals")
        if (
            compiled.memo is None
            or old.get("conflicts") is not False
            or layout_name(options) != DEFAULT_LAYOUT
            or not isinstance(old_groups, dict)
            or not isinstance(elements, dict)
            or not isinstance(shared, dict)
            or not isinstance(facts, dict)
            or not isinstance(totals, dict)
        ):
            return None
        entries = {entry.name: entry for entry in compiled.services}
        groups = {name: entry.fingerprint.hex() for name, entry in entries.items()}
        changed = [name for name, fp in groups.items() if old_groups.get(name) != fp]
        changed += [name for name in old_groups if name not in groups]
        before: dict[str, ServiceResolution] = {}
        for name in changed:
            if name in old_groups:
                resolution = compiled.remembered(bytes.fromhex(old_groups[name]))
                if resolution is None:
                    return None
                before[name] = resolution
        after = {name: compiled.resolution(entries[name]) for name in changed if name in entries}
        config = compiled.config
        endpoints = totals.get("endpoints", 0)
        endpoints -= sum(_endpoint_total(r.service_ports) for r in before.values())
        endpoints += sum(_endpoint_total(r.service_ports) for r in after.values())
        comments_on = _element_comments(endpoints, options)
        ctx = service_context(config, options, comments_on)
        if ctx != old.get("ctx"):
            return None

        empty = _Contribution.of(config, (), options, comments_on, None)
        old_parts = [
            _Contribution.of(config, r.service_ports, options, comments_on, empty) for r in before.values()
        ]
        new_parts = [
            _Contribution.of(config, r.service_ports, options, comments_on, empty) for r in after.values()
        ]

        # The chains the elements lead to (and session affinity) decide the table's skeleton.
        new_facts = {"chains": dict(facts.get("chains", {})), "affinity": facts.get("affinity", 0)}
        for sign, parts in ((-1, old_parts), (1, new_parts)):
            for part in parts:
                for chain in part.chains:
                    new_facts["chains"][chain] = new_facts["chains"].get(chain, 0) + sign
                new_facts["affinity"] += sign * part.affinity
        new_facts["chains"] = {c: n for c, n in new_facts["chains"].items() if n}
        if set(new_facts["chains"]) != set(facts.get("chains", {})) or (new_facts["affinity"] > 0) != (
            facts.get("affinity", 0) > 0
        ):
            return None

        new_elements: Elements = dict(elements)
        new_shared: dict[str, dict[str, int]] = {c: dict(keys) for c, keys in shared.items()}
        touched: dict[str, list[str]] = {}
        copied: set[str] = set()

        def writable(collection: str) -> dict[str, str] | None:
            if collection not in new_elements:
                return None
            if collection not in copied:
                new_elements[collection] = dict(new_elements[collection])
                copied.add(collection)
            return new_elements[collection]

        for part in old_parts:
            for collection, items in part.elements.items():
                target = writable(collection)
                if target is None:
                    return None
                counts = new_shared.setdefault(collection, {})
                for key, text in items.items():
                    if target.get(key) != text:
                        return None  # the state does not have what this Service had loaded
                    touched.setdefault(collection, []).append(key)
                    count = counts.get(key, 1)
                    if count > 2:
                        counts[key] = count - 1
                    elif count == 2:
                        del counts[key]
                    else:
                        del target[key]
        for part in new_parts:
            for collection, items in part.elements.items():
                target = writable(collection)
                if target is None:
                    return None
                counts = new_shared.setdefault(collection, {})
                for key, text in items.items():
                    touched.setdefault(collection, []).append(key)
                    present = target.get(key)
                    if present is None:
                        target[key] = text
                    elif present != text or collection in CLAIM_COLLECTIONS:
                        return None  # first one wins: depends on the order (a whole-plan job)
                    else:
                        counts[key] = counts.get(key, 1) + 1
        new_shared = {c: keys for c, keys in new_shared.items() if keys}

        udp = dict(old.get("udp", {}))
        for resolution in before.values():
            for key in udp_facts_of(_ipv4(resolution.service_ports)):
                udp.pop(key, None)
        for resolution in after.values():
            udp.update(udp_facts_of(_ipv4(resolution.service_ports)))
        ports = tuple(sp for r in (*before.values(), *after.values()) for sp in _ipv4(r.service_ports))
        by_service = {
            "groups": groups,
            "ctx": ctx,
            "totals": {"endpoints": endpoints},
            "shared": new_shared,
            "facts": new_facts,
            "conflicts": False,
        }
        desired = Desired(
            Plan(config, ports, ()), self.table, None, None, new_elements, udp, by_service, touched
        )
        change = self.plan_change(runner, old, True, desired, generation)
        change.sysctls = self.sysctls(desired.plan)
        change.touched = {"elements": dict(touched)}
        return change

    def plan_cleanup(self, runner: Runner, old: NftablesState | None) -> NftablesChange:
        tables = runner.run(["nft", "list", "tables", FAMILY])
        if tables.ok and f"table {FAMILY} {self.table}" not in tables.stdout.splitlines():
            return NftablesChange(ChangeKind.NONE, "", "nothing of ours on this host", None)
        payload = f"delete table {FAMILY} {self.table}\n"
        return NftablesChange(ChangeKind.CLEANUP, payload, f"table {FAMILY} {self.table} removed", None)

    # -- validation and loading ------------------------------------------------------------

    def _nft_file(self, runner: Runner, payload: str, check: bool, loader: bool) -> tuple[Result, str]:
        with tempfile.NamedTemporaryFile("w", prefix="svc2rules-", suffix=".nft", delete=False) as fh:
            fh.write(payload)
            path = fh.name
        try:
            argv = ["nft", "-c", "-f", path] if check else ["nft", "-f", path]
            return runner.run(argv, loader=loader, holds_lock=True), path
        finally:
            os.unlink(path)

    def validate(self, runner: Runner, change: NftablesChange) -> None:
        if change.kind == "full":
            # A full load is one transaction that the kernel either takes whole or refuses
            # whole; `nft -c` first would double its cost (1.3 s at 10k Services) for nothing.
            return
        result, _ = self._nft_file(runner, change.payload, check=True, loader=False)
        if not result.ok:
            self._fail("nft -c refused the ruleset", result, change)

    def load(self, runner: Runner, change: NftablesChange) -> None:
        result, _ = self._nft_file(runner, change.payload, check=False, loader=True)
        if not result.ok:
            if change.kind == "cleanup" and "No such file" in result.stderr:
                return
            self._fail("the kernel refused the ruleset; the host keeps its previous rules", result, change)

    def _fail(self, what: str, result: Result, change: NftablesChange) -> None:
        text = result.stderr or result.stdout
        match = _ERROR_LINE.search(text)
        lines = change.payload.splitlines()
        if match and 1 <= int(match.group(1)) <= len(lines):
            number = int(match.group(1))
            line = lines[number - 1].strip()
            origin = self._origin(line, change)
            shown = line if len(line) <= 200 else line[:197] + "..."
            where = f" (from Service {origin})" if origin else ""
            raise ApplyError(f"{what}: {match.group(2).strip()}; line {number}: {shown}{where}")
        raise ApplyError(f"{what}: {first_line(text)}")

    def _origin(self, line: str, change: NftablesChange) -> str | None:
        match = _SERVICE.search(line)
        if match:
            return match.group(1)
        desired = change.desired
        if desired is None:
            return None
        words = set(re.findall(r"[0-9]+(?:\.[0-9]+){3}", line))
        for sp in desired.plan.for_family(IPFamily.IPv4):
            ips = {sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips}
            if ips & words or any(ep.ip in words for ep in sp.reachable_endpoints):
                return str(sp.key)
        return None

    # -- diff ------------------------------------------------------------------------------

    def _owned(self, listing: str) -> str:
        """`nft list table` without our marker and learnt affinity entries, elements sorted
        one per line (the kernel lists a set in hash order, which depends on its history)."""
        out: list[str] = []
        skip = False
        collecting: list[str] | None = None
        for line in listing.splitlines():
            stripped = line.strip()
            if stripped.startswith(f"set {MARKER_SET} "):
                skip = True
            if skip:
                if stripped == "}":
                    skip = False
                continue
            if collecting is None and stripped.startswith("elements = {"):
                collecting = []
                stripped = stripped[len("elements = {") :]
            if collecting is not None:
                done = stripped.endswith("}")
                collecting.extend(e.strip() for e in stripped.rstrip("}").split(",") if e.strip())
                if done:
                    out.append("\t\telements = {")
                    out.extend(f"\t\t\t{e}" for e in sorted(collecting) if "expires " not in e)
                    out.append("\t\t}")
                    collecting = None
                continue
            if out and not stripped and not out[-1].strip():
                continue
            out.append(line)
        return _sorted_blocks(out)

    def dump_live(self, runner: Runner) -> str:
        result = runner.run(["nft", "list", "table", FAMILY, self.table])
        return self._owned(result.stdout) if result.ok else ""

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
        assert desired.text is not None, "diff renders the whole plan"
        with tempfile.NamedTemporaryFile("w", prefix="svc2rules-diff-", suffix=".nft", delete=False) as fh:
            fh.write(desired.text)
            path = fh.name
        try:
            script = f'nft -f "$1" && nft list table {FAMILY} {desired.table}'
            result = runner.run(["unshare", "--net", "--", "sh", "-c", script, "sh", path])
        finally:
            os.unlink(path)
        if not result.ok:
            raise ApplyError(
                f"cannot load the compiled rules in a scratch namespace: {first_line(result.stderr)}"
            )
        return self._owned(result.stdout)


# -- per-Service planning ------------------------------------------------------------------------


def _ipv4(ports: tuple[ServicePort, ...]) -> tuple[ServicePort, ...]:
    return tuple(sp for sp in ports if sp.family == IPFamily.IPv4)


def _endpoint_total(ports: tuple[ServicePort, ...]) -> int:
    return sum(len(sp.reachable_endpoints) for sp in _ipv4(ports))


def _element_comments(total_endpoints: int, options: RenderOptions[NftablesOptions]) -> bool:
    """render.element_comments, from the plan's total of IPv4 endpoints."""
    return options.comments.per_endpoint(total_endpoints)


def service_context(
    config: ProxyConfig, options: RenderOptions[NftablesOptions], element_comments_on: bool
) -> str:
    """Everything every Service's elements depend on besides its own objects: a Service's part
    of the state is reused only while this is unchanged."""
    parts = (
        code_identity(),
        config.model_dump_json(),
        options.table,
        options.comments,
        options.jumps,
        options.backend,
        element_comments_on,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _verdict_chain(text: str) -> str | None:
    """The chain an element leads to (`... : goto CHAIN` or `jump CHAIN`), if any."""
    _, separator, value = text.rpartition(" : ")
    if separator and value.startswith(("goto ", "jump ")):
        return value.split(" ", 1)[1]
    return None


@dataclass
class _Contribution:
    """What one Service adds to the table: its elements (all but those the table has without
    any Service), the chains they lead to, and whether it uses session affinity. The grouped
    layout's sets, maps and chains follow from those chains and affinity alone."""

    elements: dict[str, dict[str, str]]
    chains: set[str]
    affinity: int

    @classmethod
    def of(
        cls,
        config: ProxyConfig,
        ports: tuple[ServicePort, ...],
        options: RenderOptions[NftablesOptions],
        comments_on: bool,
        empty: _Contribution | None,
    ) -> _Contribution:
        ipv4 = _ipv4(ports)
        table, _, _ = build_table(Plan(config, ipv4, ()), options, element_comments_on=comments_on)
        fixed = empty.elements if empty is not None else {}
        elements: dict[str, dict[str, str]] = {}
        chains: set[str] = set()
        for collection in table.collections:
            skip = fixed.get(collection.name, {})
            items = {}
            for text in collection.elements:
                key = element_key(text)
                if skip.get(key) == text:
                    continue
                items[key] = text
                chain = _verdict_chain(text)
                if chain is not None:
                    chains.add(chain)
            if items:
                elements[collection.name] = items
        return cls(elements, chains, int(any(sp.affinity_timeout for sp in ipv4)))


class _Journal:
    """Watches a whole-plan build (LayoutObserver): which Services offer which element keys.

    A key offered by several Services with the same text is shared (the state counts them, so
    it goes only with the last); offered with different texts, or a claimed key offered twice,
    the first Service wins, which only a whole-plan build decides (`conflicts`)."""

    def __init__(self) -> None:
        self.service: str | None = None
        self.affinity = False
        self.first: dict[tuple[str, str], tuple[str, str]] = {}  # (collection, key) -> (service, text)
        self.counts: dict[tuple[str, str], int] = {}  # keys offered by several Services
        self.chain_counts: dict[str, int] = {}
        self.affinity_count = 0
        self.conflicts = False
        self._chains: set[str] = set()

    def port(self, sp: ServicePort | None) -> None:
        name = f"{sp.key.namespace}/{sp.key.name}" if sp is not None else None
        if name != self.service:
            self._close()
            self.service = name
        if sp is not None and sp.affinity_timeout:
            self.affinity = True

    def _close(self) -> None:
        if self.service is None:
            return
        for chain in self._chains:
            self.chain_counts[chain] = self.chain_counts.get(chain, 0) + 1
        self.affinity_count += self.affinity
        self._chains, self.affinity = set(), False

    def element(self, collection: str, key: str, text: str) -> None:
        service = self.service
        if service is None:
            return
        chain = _verdict_chain(text)
        if chain is not None:
            self._chains.add(chain)
        slot = (collection, key)
        first = self.first.get(slot)
        if first is None:
            self.first[slot] = (service, text)
        elif first[0] != service:
            if first[1] != text or collection in CLAIM_COLLECTIONS:
                self.conflicts = True
            # Ports of one Service are consecutive: count each Service once.
            self.first[slot] = (service, first[1])
            self.counts[slot] = self.counts.get(slot, 1) + 1

    def state(self) -> dict[str, Any]:
        self._close()
        shared: dict[str, dict[str, int]] = {}
        for (collection, key), count in self.counts.items():
            shared.setdefault(collection, {})[key] = count
        return {
            "shared": shared,
            "facts": {"chains": self.chain_counts, "affinity": self.affinity_count},
            "conflicts": self.conflicts,
        }
