"""The companion iptables rules on a host: read back, compared, rewritten, removed.

Our chains are few and small, so a change rewrites all of them in one `iptables-restore
--noflush` (atomic per table). To tell a real difference from a difference of spelling,
the compiled rules are loaded into a scratch network namespace (`unshare --net`, with
empty copies of our ipsets, which `-m set` needs to exist) and saved back: both sides are
then compared in the kernel's own spelling. The same trial load is what validates the
payload before the host is touched.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.backends.ipvs.names import IpvsNames
from svc2rules.errors import ApplyError
from svc2rules.host.runner import Runner, first_line

TABLES = ("nat", "filter")
BUILTIN = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"), "filter": ("INPUT", "FORWARD", "OUTPUT")}
XTABLES_WAIT = "5"
_GENERATION = re.compile(r"svc2rules generation ([A-Za-z0-9-]+)")
_SPLIT = "#--svc2rules-split--"


@dataclass
class Snapshot:
    """Our chains (rules in `iptables-save` spelling) and the built-in chains' jumps to them."""

    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> chain -> specs
    jumps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> [(chain, spec)]

    def comparable(self, names: IpvsNames) -> tuple[object, ...]:
        """What must match for the host to be up to date (the apply marker aside)."""
        out: list[object] = []
        for table in TABLES:
            chains = {c: r for c, r in self.chains.get(table, {}).items() if c != names.applied}
            out.append(sorted(chains.items()))
            out.append(sorted(self.jumps.get(table, [])))
        return tuple(out)

    def generation(self, names: IpvsNames) -> str | None:
        for spec in self.chains.get("filter", {}).get(names.applied, []):
            match = _GENERATION.search(spec)
            if match:
                return match.group(1)
        return None


def _targets(spec: str, names: IpvsNames) -> bool:
    words = spec.split()
    return any(w in ("-j", "-g") and names.owns_chain(t) for w, t in itertools.pairwise(words))


def parse_save(saved: dict[str, str], names: IpvsNames) -> Snapshot:
    snap = Snapshot()
    for table, text in saved.items():
        chains: dict[str, list[str]] = {}
        jumps: list[tuple[str, str]] = []
        for line in text.splitlines():
            if line.startswith(":") and names.owns_chain(line[1:].split()[0]):
                chains.setdefault(line[1:].split()[0], [])
            elif line.startswith("-A "):
                _, chain, spec = line.split(" ", 2)
                if names.owns_chain(chain):
                    chains.setdefault(chain, []).append(spec)
                elif chain in BUILTIN[table] and _targets(spec, names):
                    jumps.append((chain, spec))
        snap.chains[table] = chains
        snap.jumps[table] = jumps
    return snap


def read_live(runner: Runner, names: IpvsNames) -> Snapshot:
    saved = {}
    for table in TABLES:
        result = runner.run(["iptables-save", "-t", table])
        saved[table] = result.stdout if result.ok else ""
    return parse_save(saved, names)


def kernel_spelling(runner: Runner, rules: IpvsRuleset, names: IpvsNames) -> Snapshot:
    """Trial-load the compiled payload in a scratch namespace and read it back."""
    sets = "".join(s.create_line() + "\n" for s in rules.ipsets)
    with tempfile.TemporaryDirectory(prefix="svc2rules-ipvs-") as tmp:
        sets_path, rules_path = os.path.join(tmp, "sets"), os.path.join(tmp, "rules")
        with open(sets_path, "w", encoding="ascii") as fh:
            fh.write(sets)
        with open(rules_path, "w", encoding="utf-8") as fh:
            fh.write(rules.iptables)
        script = (
            'ipset restore < "$1" || exit 97; iptables-restore -w --noflush < "$2" || exit 98; '
            f"iptables-save -t nat && echo '{_SPLIT}' && iptables-save -t filter"
        )
        result = runner.run(["unshare", "--net", "--", "sh", "-c", script, "sh", sets_path, rules_path])
    if result.returncode == 97:
        raise ApplyError(f"ipset refused our sets in a scratch namespace: {first_line(result.stderr)}")
    if result.returncode == 98:
        raise ApplyError(f"the kernel refused the ipvs backend's iptables rules: {first_line(result.stderr)}")
    if not result.ok:
        raise ApplyError(f"cannot validate in a scratch network namespace: {first_line(result.stderr)}")
    nat, _, filt = result.stdout.partition(_SPLIT)
    return parse_save({"nat": nat, "filter": filt}, names)


def rewrite(rules: IpvsRuleset, live: Snapshot, names: IpvsNames) -> tuple[str, str]:
    """Payload replacing our chains and jumps with the compiled ones, and its undo."""
    out: list[str] = []
    undo: list[str] = []
    for table in TABLES:
        wanted = rules.tables.get(table, {})
        have = {c: r for c, r in live.chains.get(table, {}).items() if c != names.applied}
        out.append(f"*{table}")
        out.extend(f":{chain} - [0:0]" for chain in [*wanted, *(c for c in have if c not in wanted)])
        out.extend(f"-A {chain} {spec}" for chain, specs in wanted.items() for spec in specs)
        out.extend(f"-D {chain} {spec}" for chain, spec in live.jumps.get(table, []))
        out.extend(f"-I {chain} 1 {spec}" for chain, spec in rules.jumps.get(table, []))
        out.extend(f"-X {chain}" for chain in have if chain not in wanted)
        out.append("COMMIT")

        undo.append(f"*{table}")
        undo.extend(f":{chain} - [0:0]" for chain in [*have, *(c for c in wanted if c not in have)])
        undo.extend(f"-A {chain} {spec}" for chain, specs in have.items() for spec in specs)
        undo.extend(f"-D {chain} {spec}" for chain, spec in rules.jumps.get(table, []))
        undo.extend(f"-I {chain} 1 {spec}" for chain, spec in reversed(live.jumps.get(table, [])))
        undo.extend(f"-X {chain}" for chain in wanted if chain not in have)
        undo.append("COMMIT")
    return "\n".join(out) + "\n", "\n".join(undo) + "\n"


def marker(names: IpvsNames, generation: str, live: Snapshot) -> tuple[str, str]:
    """Payload recording the applied generation in our marker chain, and its undo."""
    chain = names.applied
    payload = (
        f"*filter\n:{chain} - [0:0]\n"
        f'-A {chain} -m comment --comment "svc2rules generation {generation}" -j RETURN\nCOMMIT\n'
    )
    before = live.chains.get("filter", {}).get(chain)
    if before is None:
        undo = f"*filter\n:{chain} - [0:0]\n-X {chain}\nCOMMIT\n"
    else:
        undo = f"*filter\n:{chain} - [0:0]\n" + "".join(f"-A {chain} {s}\n" for s in before) + "COMMIT\n"
    return payload, undo


def removal(live: Snapshot) -> str | None:
    """Payload deleting every chain and jump of ours (cleanup)."""
    out: list[str] = []
    for table in TABLES:
        chains = list(live.chains.get(table, {}))
        jumps = live.jumps.get(table, [])
        if not chains and not jumps:
            continue
        out.append(f"*{table}")
        out.extend(f"-D {chain} {spec}" for chain, spec in jumps)
        out.extend(f":{chain} - [0:0]" for chain in chains)
        out.extend(f"-X {chain}" for chain in chains)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else None


def restoration(live: Snapshot) -> str:
    """Payload putting `live` back (the undo of `removal`)."""
    out: list[str] = []
    for table in TABLES:
        out.append(f"*{table}")
        chains = live.chains.get(table, {})
        out.extend(f":{chain} - [0:0]" for chain in chains)
        out.extend(f"-A {chain} {spec}" for chain, specs in chains.items() for spec in specs)
        out.extend(f"-I {chain} 1 {spec}" for chain, spec in reversed(live.jumps.get(table, [])))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def load(runner: Runner, payload: str, what: str) -> None:
    result = runner.run(["iptables-restore", "-w", XTABLES_WAIT, "--noflush"], stdin=payload, loader=True)
    if not result.ok:
        raise ApplyError(f"iptables-restore refused {what}: {first_line(result.stderr or result.stdout)}")


def dump_lines(snap: Snapshot, names: IpvsNames, tables: Iterable[str] = TABLES) -> list[str]:
    """Our rules for `diff`, in a stable order."""
    out: list[str] = []
    for table in tables:
        for chain, specs in sorted(snap.chains.get(table, {}).items()):
            if chain == names.applied:
                continue
            out.append(f"iptables {table}: :{chain}")
            out.extend(f"iptables {table}: -A {chain} {spec}" for spec in specs)
        out.extend(
            f"iptables {table}: -A {chain} {spec}" for chain, spec in sorted(snap.jumps.get(table, []))
        )
    return out
