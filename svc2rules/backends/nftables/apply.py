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
from typing import Any

from svc2rules.apply.base import Change
from svc2rules.apply.conntrack import udp_facts
from svc2rules.apply.runner import Result, Runner, first_line
from svc2rules.backends import RenderOptions
from svc2rules.backends.nftables.render import render_nftables
from svc2rules.backends.nftables.text import check_table_name
from svc2rules.errors import ApplyError
from svc2rules.ir import IPFamily, Plan

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
    text: str
    skeleton: str
    elements: Elements
    udp: dict[str, dict[str, Any]]


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


class NftablesApplier:
    name = "nftables"

    def __init__(self) -> None:
        self.table = "svc2rules"

    def desired(self, plan: Plan, options: RenderOptions) -> Desired:
        self.table = check_table_name(options.table)
        text = render_nftables(plan, options).text
        skeleton, elements = split_script(text)
        udp = udp_facts(plan, plan.for_family(IPFamily.IPv4))
        return Desired(plan, self.table, text, skeleton, elements, udp)

    def sysctls(self, plan: Plan) -> dict[str, str]:
        # This layout never matches 127.0.0.0/8 NodePorts, so route_localnet is not needed.
        return {"net.ipv4.ip_forward": "1"}

    def udp_facts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        return desired.udp

    # -- reading the kernel ----------------------------------------------------------------

    def marker(self, runner: Runner, state: dict[str, Any] | None) -> str | None:
        if state is not None and state.get("table"):
            self.table = state["table"]
        result = runner.run(["nft", "list", "set", FAMILY, self.table, MARKER_SET])
        match = _GENERATION.search(result.stdout) if result.ok else None
        return match.group(1) if match else None

    def quick_check(self, runner: Runner, state: dict[str, Any]) -> bool:
        return True  # the table is ours whole: the marker in it is the check

    def read_live(self, runner: Runner, options: RenderOptions) -> dict[str, Any] | None:
        # Not needed: without a trusted state we load the whole table, which replaces
        # whatever is there in the same transaction. Reading it back would cost ~10 s at 10k.
        return None

    # -- planning --------------------------------------------------------------------------

    def _marker_commands(self, generation: str, replace: bool) -> list[str]:
        out = [f"delete set {FAMILY} {self.table} {MARKER_SET}"] if replace else []
        out.append(
            f"add set {FAMILY} {self.table} {MARKER_SET} "
            f'{{ type inet_service; comment "svc2rules generation {generation}"; }}'
        )
        return out

    def plan_change(
        self, runner: Runner, old: dict[str, Any] | None, trusted: bool, desired: Desired, generation: str
    ) -> Change:
        self.table = desired.table
        header, blocks = skeleton_blocks(desired.skeleton)
        block_hashes = {name: _digest(text) for name, text in blocks.items()}
        new_state = {
            "backend": self.name,
            "generation": generation,
            "table": self.table,
            "header": _digest(header),
            "blocks": block_hashes,
            "elements": desired.elements,
            "udp": desired.udp,
        }
        details: dict[str, Any] = {"desired": desired}
        old_blocks: dict[str, str] = (old or {}).get("blocks", {})
        if (
            not trusted
            or old is None
            or old.get("table") != self.table
            or old.get("header") != new_state["header"]
            or any(old_blocks[name] != digest for name, digest in block_hashes.items() if name in old_blocks)
        ):
            payload = desired.text + "\n".join(self._marker_commands(generation, replace=False)) + "\n"
            count = sum(len(e) for e in desired.elements.values())
            return Change(
                "full", payload, f"full: table {self.table} replaced ({count} elements)", new_state, details
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
        for name in sorted(set(old_elements) | set(desired.elements)):
            before = old_elements.get(name, {})
            after = desired.elements.get(name, {})
            gone = [k for k, text in before.items() if after.get(k) != text]
            new = [text for k, text in after.items() if before.get(k) != text]
            if gone and name not in gone_collections:
                deletes.append(f"delete element {FAMILY} {self.table} {name} {{ {', '.join(gone)} }}")
                deleted += len(gone)
            if new:
                adds.append(f"add element {FAMILY} {self.table} {name} {{ {', '.join(new)} }}")
                added += len(new)
        if not deletes and not adds and not gone_blocks and not new_blocks:
            return Change("none", "", "no changes", None)
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
        return Change("incremental", "\n".join(commands) + "\n", summary, new_state, details)

    def plan_cleanup(self, runner: Runner, old: dict[str, Any] | None, options: RenderOptions) -> Change:
        self.table = check_table_name(options.table)
        tables = runner.run(["nft", "list", "tables", FAMILY])
        if tables.ok and f"table {FAMILY} {self.table}" not in tables.stdout.splitlines():
            return Change("none", "", "nothing of ours on this host", None)
        payload = f"delete table {FAMILY} {self.table}\n"
        return Change("cleanup", payload, f"table {FAMILY} {self.table} removed", None, {})

    # -- validation and loading ------------------------------------------------------------

    def _nft_file(self, runner: Runner, payload: str, check: bool, loader: bool) -> tuple[Result, str]:
        with tempfile.NamedTemporaryFile("w", prefix="svc2rules-", suffix=".nft", delete=False) as fh:
            fh.write(payload)
            path = fh.name
        try:
            argv = ["nft", "-c", "-f", path] if check else ["nft", "-f", path]
            return runner.run(argv, loader=loader), path
        finally:
            os.unlink(path)

    def validate(self, runner: Runner, change: Change) -> None:
        if change.kind == "full":
            # A full load is one transaction that the kernel either takes whole or refuses
            # whole; `nft -c` first would double its cost (1.3 s at 10k Services) for nothing.
            return
        result, _ = self._nft_file(runner, change.payload, check=True, loader=False)
        if not result.ok:
            self._fail("nft -c refused the ruleset", result, change)

    def load(self, runner: Runner, change: Change) -> None:
        result, _ = self._nft_file(runner, change.payload, check=False, loader=True)
        if not result.ok:
            if change.kind == "cleanup" and "No such file" in result.stderr:
                return
            self._fail("the kernel refused the ruleset; the host keeps its previous rules", result, change)

    def _fail(self, what: str, result: Result, change: Change) -> None:
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

    def _origin(self, line: str, change: Change) -> str | None:
        match = _SERVICE.search(line)
        if match:
            return match.group(1)
        desired: Desired | None = change.details.get("desired")
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

    def dump_live(self, runner: Runner, options: RenderOptions) -> str:
        self.table = check_table_name(options.table)
        result = runner.run(["nft", "list", "table", FAMILY, self.table])
        return self._owned(result.stdout) if result.ok else ""

    def dump_desired(self, runner: Runner, desired: Desired) -> str:
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
