"""Run inside a private network namespace (test_host.py starts it with `unshare --net`).

Loads the ipset and iptables sections of a compiled ruleset the way a person would (the
README's recipe), then asks the applier's own readers whether the host matches the ruleset:
it must, or the applier would rewrite on every run. Prints a JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from svc2rules.backends.ipvs import sets
from svc2rules.backends.ipvs.names import IpvsNames
from svc2rules.backends.ipvs.reconcile import Live, Wanted, ledger_set, plan
from svc2rules.family import IPFamily
from svc2rules.host.runner import Runner
from svc2rules.syntax import xtables

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.backends.ipvs.helpers import ruleset, section, text
from tests.backends.ipvs.test_host import OBJECTS


def main() -> None:
    names = IpvsNames("SVC2R")
    chains = names.owned_chains(IPFamily.IPv4)
    runner = Runner()
    compiled = text(OBJECTS)
    rules = ruleset(OBJECTS)
    out: dict[str, object] = {}
    for tool, name in (
        (["ipset", "restore", "-exist"], "ipset"),
        (["iptables-restore", "-w", "--noflush"], "iptables"),
    ):
        proc = subprocess.run(
            tool, input=section(compiled, name), capture_output=True, text=True, check=False
        )
        out[f"{name}_rc"] = proc.returncode
        out[f"{name}_err"] = proc.stderr
    spelled = chains.kernel_spelling(runner, rules.tables, rules.ipsets)
    live_tables = chains.read_live(runner)
    ledger = ledger_set(rules, names)
    wanted = Wanted(rules, names, ledger, spelled)
    live = Live(
        dummy_index=1,
        dummy_up=True,
        dummy_kind="dummy",
        addresses=frozenset(rules.bind_addresses),
        sets=sets.read_live(runner, {s.name for s in wanted.sets}),
        tables=live_tables,
    )
    planned = plan(live, wanted, {}, 0.0, "g")
    out["tables_match"] = chains.comparable(spelled) == chains.comparable(live_tables)
    out["steps"] = [type(op).__name__ + ": " + op.describe().splitlines()[0] for op in planned.ops]
    out["ipset_steps"] = [op.describe() for op in planned.ops if type(op).__name__ == "IpsetRestore"]
    # The cleanup payload removes every chain and jump of ours, and only those.
    removal = xtables.write(chains.removal(live_tables))
    proc = subprocess.run(
        ["iptables-restore", "-w", "--noflush"], input=removal, capture_output=True, text=True, check=False
    )
    out["removal_rc"] = proc.returncode
    after = chains.read_live(runner)
    out["left_after_removal"] = {t: list(c) for t, c in after.chains.items()} | {"jumps": after.jumps}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
