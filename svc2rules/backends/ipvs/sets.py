"""Our ipsets on a host: read back with `ipset save`, changed with `ipset restore -exist`.

Entries compare as `ipset save` prints them, comment included (the compiler builds them the
same way); an entry whose comment alone changed is re-added, which `-exist` turns into an
update. Only the set names the backend defines are ever read or touched.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from svc2rules.errors import ApplyError
from svc2rules.host.runner import Runner, first_line
from svc2rules.syntax import ipset
from svc2rules.syntax.ipset import IpSet


def read_live(runner: Runner, names: Iterable[str]) -> dict[str, IpSet]:
    result = runner.run(ipset.SAVE_ARGV)
    if not result.ok:
        raise ApplyError(f"{shlex.join(ipset.SAVE_ARGV)} failed: {first_line(result.stderr)}")
    return ipset.read_save(result.stdout, set(names))


def compatible(live: IpSet, wanted: IpSet) -> bool:
    """Whether `create -exist` will accept the existing set as ours."""
    return live.type == wanted.type and live.options.comment == wanted.options.comment


def spelled(s: IpSet) -> str:
    """The set's type and options as `ipset save` prints them, for messages."""
    return " ".join([s.type, *s.options.words()])


def describe(commands: Sequence[ipset.Command]) -> str:
    return f"{shlex.join(ipset.RESTORE_ARGV)} <<EOF\n{ipset.write(commands)}EOF"


def restore(runner: Runner, commands: Sequence[ipset.Command], what: str) -> None:
    result = runner.run(ipset.RESTORE_ARGV, stdin=ipset.write(commands), loader=True)
    if not result.ok:
        raise ApplyError(f"ipset restore refused {what}: {first_line(result.stderr or result.stdout)}")
