"""Our ipsets on a host: read back with `ipset save`, changed with `ipset restore -exist`.

Entries compare as `ipset save` prints them, comment included (the compiler prints them the
same way); an entry whose comment alone changed is re-added, which `-exist` turns into an
update. Only the set names the backend defines are ever read or touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.backends.ipvs.model import IpSet
from svc2rules.errors import ApplyError
from svc2rules.host.runner import Runner, first_line


@dataclass(frozen=True, slots=True)
class LiveSet:
    name: str
    kind: str
    options: tuple[str, ...]
    entries: tuple[str, ...]


def entry_key(entry: str) -> str:
    """The element itself, without its comment."""
    return entry.split(" comment ", 1)[0]


def parse_save(text: str, wanted: set[str]) -> dict[str, LiveSet]:
    created: dict[str, tuple[str, tuple[str, ...]]] = {}
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split(" ", 3)
        if len(words) >= 3 and words[0] == "create" and words[1] in wanted:
            created[words[1]] = (words[2], tuple(words[3].split()) if len(words) > 3 else ())
        elif len(words) >= 3 and words[0] == "add" and words[1] in wanted:
            entries.setdefault(words[1], []).append(line.split(" ", 2)[2])
    return {
        name: LiveSet(name, kind, options, tuple(entries.get(name, ())))
        for name, (kind, options) in created.items()
    }


def read_live(runner: Runner, names: set[str]) -> dict[str, LiveSet]:
    result = runner.run(["ipset", "save"])
    if not result.ok:
        raise ApplyError(f"ipset save failed: {first_line(result.stderr)}")
    return parse_save(result.stdout, names)


def compatible(live: LiveSet, wanted: IpSet) -> bool:
    """Whether `create -exist` will accept the existing set as ours."""
    return live.kind == wanted.kind and ("comment" in live.options) == ("comment" in wanted.options.split())


def restore(runner: Runner, lines: tuple[str, ...], what: str) -> None:
    result = runner.run(["ipset", "restore", "-exist"], stdin="\n".join(lines) + "\n", loader=True)
    if not result.ok:
        raise ApplyError(f"ipset restore refused {what}: {first_line(result.stderr or result.stdout)}")
