"""xtables chains a backend owns next to everyone else's rules: read back, compared, rewritten
together in one `--noflush` restore, removed. The ipvs backend's companion rules and the
userspace backend's rules are such chains (a prefix of their own, few and small, plus jumps
at the top of built-in chains), so a change rewrites all of them (atomic per table).

To tell a real difference from a difference of spelling, the desired tables are loaded into a
scratch network namespace (`unshare --net`, with empty copies of the ipsets they match on,
which `-m set` needs to exist) and listed back: both sides then compare in the kernel's own
spelling. The same trial load is what validates the payload before the host is touched.
Every line is spelt by the xtables (and ipset) writer, every listing read by their readers.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.runner import Runner, first_line
from svc2rules.syntax import ipset, xtables

TABLES = ("nat", "filter")
# The marker chain (the generation of the last apply) lives in filter, whatever the backend.
MARKER_TABLE = "filter"
_GENERATION = "svc2rules generation "
# host.fake recognises a scratch namespace by this prefix.
SCRATCH_NAMESPACE = ("unshare", "--net", "--")
_SETS_REFUSED = 97


@dataclass
class Snapshot:
    """Our chains (rules in the spelling they were read or built in) and the built-in chains'
    jumps to them."""

    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> chain -> specs
    jumps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> [(chain, spec)]

    @property
    def chain_count(self) -> int:
        return sum(len(chains) for chains in self.chains.values())


@dataclass(frozen=True, slots=True)
class OwnedChains:
    """The chains of one backend and family: those whose names start with `prefix`; `marker`
    (one of them) carries the generation of the last apply and is never compiled."""

    family: IPFamily
    prefix: str  # e.g. `SVC2R-IPVS-`
    marker: str
    label: str  # what the rules are, for messages: "the ipvs backend's iptables rules"
    tables: tuple[str, ...] = TABLES

    def owns(self, chain: str) -> bool:
        return chain.startswith(self.prefix)

    @property
    def spelling(self) -> xtables.Spelling:
        return xtables.spelling(self.family)

    # -- what is there ---------------------------------------------------------------------

    def snapshot(self, tables: Iterable[xtables.Table]) -> Snapshot:
        """Our part of `tables` (built or read): our chains, and the jumps to them from built-in
        chains (a built table holds them in `jumps`, a read one as rules of built-in chains)."""
        snap = Snapshot()
        for table in tables:
            if table.name not in self.tables:
                continue
            chains = snap.chains.setdefault(table.name, {})
            jumps = snap.jumps.setdefault(table.name, [])
            chains.update((chain, []) for chain in table.chains if self.owns(chain))
            for rule in table.rules:
                if self.owns(rule.chain):
                    chains.setdefault(rule.chain, []).append(rule.spec)
                elif xtables.is_builtin(table.name, rule.chain) and self._jumps_to_ours(rule.spec):
                    jumps.append((rule.chain, rule.spec))
            jumps.extend((jump.chain, jump.spec) for jump in table.jumps)
        for name in self.tables:
            snap.chains.setdefault(name, {})
            snap.jumps.setdefault(name, [])
        return snap

    def _jumps_to_ours(self, spec: str) -> bool:
        return any(self.owns(target) for target in xtables.jump_targets(spec))

    def comparable(self, snap: Snapshot) -> tuple[object, ...]:
        """What must match for the host to be up to date (the marker aside)."""
        out: list[object] = []
        for table in self.tables:
            chains = {c: r for c, r in snap.chains.get(table, {}).items() if c != self.marker}
            out.append(sorted(chains.items()))
            out.append(sorted(snap.jumps.get(table, [])))
        return tuple(out)

    def foreign(self, snap: Snapshot, chain_prefix: str) -> str | None:
        """One line naming a chain under our prefix that exists without our marker chain in any
        table (someone else's: never replaced nor removed), or None."""
        if any(self.marker in snap.chains.get(table, {}) for table in self.tables):
            return None
        found = [(table, chain) for table in self.tables for chain in sorted(snap.chains.get(table, {}))]
        if not found:
            return None
        table, chain = found[0]
        return foreign_chains(chain_prefix, table, chain, len(found), self.marker)

    def generation(self, snap: Snapshot) -> str | None:
        for spec in snap.chains.get(MARKER_TABLE, {}).get(self.marker, []):
            text = xtables.comment_of(spec) or ""
            if text.startswith(_GENERATION):
                return text.removeprefix(_GENERATION)
        return None

    def read_live(self, runner: Runner) -> Snapshot:
        """Our chains and jumps in the kernel (a table that cannot be listed has none)."""
        results = runner.run_many([self.spelling.list_argv(table) for table in self.tables])
        return self.snapshot(
            xtables.read_listing(result.stdout, table)
            for table, result in zip(self.tables, results, strict=True)
            if result.ok
        )

    def kernel_spelling(
        self, runner: Runner, tables: Sequence[xtables.Table], sets: Sequence[ipset.IpSet] = ()
    ) -> Snapshot:
        """Trial-load `tables` (jumps included) in a scratch namespace and list them back."""
        listing = [xtables.Transaction(table, [], fetch_table=True) for table in self.tables]
        payload = xtables.write([*(xtables.transaction_of(t) for t in tables), *listing])
        restore = self.spelling.restore_argv()
        if not sets:
            result = runner.run([*SCRATCH_NAMESPACE, *restore], stdin=payload)
        else:
            with tempfile.TemporaryDirectory(prefix="svc2rules-scratch-") as tmp:
                sets_path = os.path.join(tmp, "sets")
                with open(sets_path, "w", encoding="utf-8") as fh:
                    fh.write(ipset.write(ipset.Create(s.definition()) for s in sets))
                script = (
                    f'{shlex.join(ipset.RESTORE_ARGV)} < "$1" || exit {_SETS_REFUSED}; '
                    f"exec {shlex.join(restore)}"
                )
                result = runner.run([*SCRATCH_NAMESPACE, "sh", "-c", script, "sh", sets_path], stdin=payload)
        if result.ok:
            return self.snapshot(xtables.read_listings(result.stdout))
        message = first_line(result.stderr or result.stdout)
        if sets and result.returncode == _SETS_REFUSED:
            raise ApplyError(f"ipset refused our sets in a scratch namespace: {message}")
        if result.stderr.startswith(SCRATCH_NAMESPACE[0]):
            raise ApplyError(f"cannot validate in a scratch network namespace: {message}")
        raise ApplyError(f"the kernel refused {self.label}: {message}")

    # -- what to write ---------------------------------------------------------------------

    def rewrite(
        self, wanted: Snapshot, live: Snapshot
    ) -> tuple[list[xtables.Transaction], list[xtables.Transaction]]:
        """The sections replacing our chains and jumps with `wanted` ones, and their undo."""
        out: list[xtables.Transaction] = []
        undo: list[xtables.Transaction] = []
        for table in self.tables:
            want = wanted.chains.get(table, {})
            have = {c: r for c, r in live.chains.get(table, {}).items() if c != self.marker}
            want_jumps, have_jumps = wanted.jumps.get(table, []), live.jumps.get(table, [])
            out.append(self._replace(table, want, have, have_jumps, want_jumps))
            undo.append(self._replace(table, have, want, want_jumps, list(reversed(have_jumps))))
        return out, undo

    @staticmethod
    def _replace(
        table: str,
        new: dict[str, list[str]],
        old: dict[str, list[str]],
        old_jumps: list[tuple[str, str]],
        new_jumps: list[tuple[str, str]],
    ) -> xtables.Transaction:
        commands: list[xtables.Command] = [
            xtables.DeclareChain(chain) for chain in [*new, *(c for c in old if c not in new)]
        ]
        commands += [xtables.Rule(chain, spec) for chain, specs in new.items() for spec in specs]
        commands += [xtables.DeleteRule(chain, spec) for chain, spec in old_jumps]
        commands += [xtables.InsertRule(chain, spec, 1) for chain, spec in new_jumps]
        commands += [xtables.DeleteChain(chain) for chain in old if chain not in new]
        return xtables.Transaction(table, commands)

    def mark(
        self, generation: str, live: Snapshot
    ) -> tuple[list[xtables.Transaction], list[xtables.Transaction]]:
        """The section recording the applied generation in the marker chain, and its undo."""
        chain = self.marker
        spec = f"{xtables.comment(_GENERATION + generation)} -j RETURN"
        payload = [
            xtables.Transaction(MARKER_TABLE, [xtables.DeclareChain(chain), xtables.Rule(chain, spec)])
        ]
        before = live.chains.get(MARKER_TABLE, {}).get(chain)
        restore: list[xtables.Command] = [xtables.DeclareChain(chain)]
        if before is None:
            restore.append(xtables.DeleteChain(chain))
        else:
            restore += [xtables.Rule(chain, s) for s in before]
        return payload, [xtables.Transaction(MARKER_TABLE, restore)]

    def removal(self, live: Snapshot) -> list[xtables.Transaction]:
        """The sections deleting every chain and jump of ours (none: nothing of ours is there)."""
        out = []
        for table in self.tables:
            chains = list(live.chains.get(table, {}))
            jumps = live.jumps.get(table, [])
            if not chains and not jumps:
                continue
            commands: list[xtables.Command] = [xtables.DeleteRule(chain, spec) for chain, spec in jumps]
            commands += [xtables.DeclareChain(chain) for chain in chains]
            commands += [xtables.DeleteChain(chain) for chain in chains]
            out.append(xtables.Transaction(table, commands))
        return out

    def restoration(self, live: Snapshot) -> list[xtables.Transaction]:
        """The sections putting `live` back (the undo of `removal`)."""
        out = []
        for table in self.tables:
            chains = live.chains.get(table, {})
            commands: list[xtables.Command] = [xtables.DeclareChain(chain) for chain in chains]
            commands += [xtables.Rule(chain, spec) for chain, specs in chains.items() for spec in specs]
            commands += [
                xtables.InsertRule(chain, spec, 1) for chain, spec in reversed(live.jumps.get(table, []))
            ]
            out.append(xtables.Transaction(table, commands))
        return out

    # -- writing and showing ---------------------------------------------------------------

    def describe(self, transactions: Sequence[xtables.Transaction], what: str) -> str:
        """The load as a person would type it."""
        text = xtables.write(transactions).rstrip()
        return f"{shlex.join(self.spelling.restore_argv())} <<EOF   # {what}\n{text}\nEOF"

    def load(self, runner: Runner, transactions: Sequence[xtables.Transaction], what: str) -> None:
        result = runner.run(self.spelling.restore_argv(), stdin=xtables.write(transactions), loader=True)
        if not result.ok:
            raise ApplyError(
                f"{self.spelling.restore} refused {what}: {first_line(result.stderr or result.stdout)}"
            )

    def dump_lines(self, snap: Snapshot) -> list[str]:
        """Our rules for `diff`, in a stable order (the marker aside)."""
        tool = self.spelling.command
        out: list[str] = []
        for table in self.tables:
            for chain, specs in sorted(snap.chains.get(table, {}).items()):
                if chain == self.marker:
                    continue
                out.append(f"{tool} {table}: :{chain}")
                out.extend(f"{tool} {table}: {xtables.Rule(chain, spec).line()}" for spec in specs)
            out.extend(
                f"{tool} {table}: {xtables.Rule(chain, spec).line()}"
                for chain, spec in sorted(snap.jumps.get(table, []))
            )
        return out


def foreign_chains(chain_prefix: str, table: str, chain: str, count: int, marker: str) -> str:
    """The refusal of a chain prefix whose chains exist without our marker chain."""
    more = f" (and {count - 1} more)" if count > 1 else ""
    return (
        f"--chain-prefix {chain_prefix}: chain {chain} in table {table}{more} already exists on this "
        f"host without svc2rules' marker chain {marker}: it is someone else's, and svc2rules neither "
        "replaces nor removes it; choose another --chain-prefix (or delete those chains yourself "
        "if they are a leftover)"
    )
