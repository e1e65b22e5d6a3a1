"""Run planned steps; when one fails, undo the ones that ran, newest first.

The undo of each step is computed from what the host had before it (carried by the step
itself), so a failed apply leaves the host as it found it -- the same virtual servers,
weights, addresses, ipset entries and chains -- and says so. Connections that a deleted
real server carried are the one thing an undo cannot bring back; deletions therefore
come last (see reconcile.py), after everything that can fail on a new input.
"""

from __future__ import annotations

from collections.abc import Sequence

from svc2rules.backends.ipvs import ops, sets
from svc2rules.backends.ipvs.kernel import Kernel
from svc2rules.errors import ApplyError
from svc2rules.host.runner import Runner


class Executor:
    def __init__(self, kernel: Kernel, runner: Runner) -> None:
        self.kernel = kernel
        self.runner = runner
        self.done: list[ops.Op] = []

    def run(self, steps: Sequence[ops.Op]) -> None:
        for step in steps:
            try:
                self._do(step)
            except Exception as raised:
                # pyroute2 raises its own errors outside of a request (lookups, socket setup).
                exc = raised if isinstance(raised, ApplyError) else ApplyError(f"{step.describe()}: {raised}")
                problems = self.rollback()
                if problems:
                    raise ApplyError(
                        f"{exc}; undoing the {len(self.done)} earlier step(s) failed too: "
                        + "; ".join(problems)
                    ) from exc
                raise ApplyError(
                    f"{exc}; the {len(self.done)} earlier step(s) were undone: the host is as it was"
                ) from exc
            self.done.append(step)

    def rollback(self) -> list[str]:
        problems = []
        for step in reversed(self.done):
            try:
                self._undo(step)
            except Exception as exc:
                problems.append(f"{step.describe().splitlines()[0]}: {exc}")
        return problems

    def _do(self, step: ops.Op) -> None:
        k = self.kernel
        match step:
            case ops.LinkAdd(name=name):
                k.link_add_dummy(name)
                k.link_up(name)
            case ops.LinkUp(name=name):
                k.link_up(name)
            case ops.LinkDel(name=name):
                k.link_del(name)
            case ops.AddrAdd(interface=iface, address=address):
                k.addr_add(iface, address)
            case ops.AddrDel(interface=iface, address=address):
                k.addr_del(iface, address)
            case ops.IpsetRestore(commands=commands):
                sets.restore(self.runner, commands, "our ipset changes")
            case ops.IptablesRestore(chains=chains, payload=payload, what=what):
                chains.load(self.runner, payload, what)
            case ops.ServiceAdd(server=vs):
                k.service_add(vs)
            case ops.ServiceEdit(server=vs):
                k.service_set(vs)
            case ops.ServiceDel(server=vs):
                k.service_del(vs)
            case ops.DestAdd(server=vs, real=rs):
                k.dest_add(vs, rs)
            case ops.DestEdit(server=vs, real=rs):
                k.dest_set(vs, rs)
            case ops.DestDel(server=vs, real=rs):
                k.dest_del(vs, rs)

    def _undo(self, step: ops.Op) -> None:
        k = self.kernel
        match step:
            case ops.LinkAdd(name=name):
                k.link_del(name)
            case ops.LinkUp():
                pass  # an interface left up does no harm
            case ops.LinkDel(name=name, addresses=addresses):
                k.link_add_dummy(name)
                k.link_up(name)
                for address in addresses:
                    k.addr_add(name, address)
            case ops.AddrAdd(interface=iface, address=address):
                k.addr_del(iface, address)
            case ops.AddrDel(interface=iface, address=address):
                k.addr_add(iface, address)
            case ops.IpsetRestore(undo=undo):
                if undo:
                    sets.restore(self.runner, undo, "the undo of our ipset changes")
            case ops.IptablesRestore(chains=chains, undo=undo, what=what):
                chains.load(self.runner, undo, f"the undo of {what}")
            case ops.ServiceAdd(server=vs):
                k.service_del(vs)
            case ops.ServiceEdit(before=before):
                k.service_set(before)
            case ops.ServiceDel(server=vs):
                k.service_add(vs)
                for rs in vs.real_servers:
                    k.dest_add(vs, rs)
            case ops.DestAdd(server=vs, real=rs):
                k.dest_del(vs, rs)
            case ops.DestEdit(server=vs, real=rs, before=weight):
                k.dest_set(vs, rs.with_weight(weight))
            case ops.DestDel(server=vs, real=rs):
                k.dest_add(vs, rs)
