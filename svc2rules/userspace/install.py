"""Load the userspace rules into the host's iptables (for `svc2rules proxy --apply-rules`).

The chains are replaced atomically by one `iptables-restore --noflush`; the jumps from the
built-in chains are added only when missing (`iptables -C`), so reloading any number of
times leaves exactly one of each.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from svc2rules.backends import RenderOptions
from svc2rules.backends.userspace.render import build_tables, render_userspace
from svc2rules.errors import ApplyError
from svc2rules.ir import Plan
from svc2rules.userspace.addressing import Addressing
from svc2rules.userspace.layout import build_layout

TIMEOUT = 60.0


def _run(argv: Sequence[str], input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), input=input_text, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"{argv[0]}: {exc}") from None


def install_rules(plan: Plan, addressing: Addressing, chain_prefix: str) -> None:
    options = RenderOptions(chain_prefix=chain_prefix, jumps=False, backend=addressing)
    text = render_userspace(plan, options).text
    restored = _run(["iptables-restore", "-w", "5", "--noflush"], text)
    if restored.returncode != 0:
        raise ApplyError(f"iptables-restore failed: {restored.stderr.strip() or restored.returncode}")
    layout = build_layout(plan, addressing.port_range)
    for table in build_tables(plan, layout, addressing, options):
        for jump in table.jumps:
            rule = [jump.chain, *shlex.split(jump.spec)]
            base = ["iptables", "-w", "5", "-t", table.name]
            if _run([*base, "-C", *rule]).returncode == 0:
                continue
            added = _run([*base, "-I", jump.chain, "1", *rule[1:]])
            if added.returncode != 0:
                raise ApplyError(
                    f"iptables -I {jump.chain} failed: {added.stderr.strip() or added.returncode}"
                )
