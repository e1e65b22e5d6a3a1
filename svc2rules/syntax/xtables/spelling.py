"""How each IP family is spelt in xtables: the one table of per-family tool names.

Everything above the syntax layer asks this table (keyed by `IPFamily`) for the argv of a
listing, a save or a restore instead of naming `iptables` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from svc2rules.family import IPFamily

# Seconds to wait for the xtables lock (`-w`): a busy lock then fails with a message saying so.
XTABLES_WAIT = "5"


@dataclass(frozen=True, slots=True)
class Spelling:
    """One family's xtables tools."""

    family: IPFamily
    command: str  # iptables / ip6tables
    restore: str  # iptables-restore / ip6tables-restore
    save: str  # iptables-save / ip6tables-save

    def restore_argv(self, *, test: bool = False) -> list[str]:
        """A `--noflush` restore: it touches only what its input names."""
        argv = [self.restore, "-w", XTABLES_WAIT, "--noflush"]
        return [*argv, "--test"] if test else argv

    def save_argv(self, table: str | None = None) -> list[str]:
        return [self.save, "-t", table] if table else [self.save]

    def list_argv(self, table: str, chain: str | None = None) -> list[str]:
        """`-S`: a chain's rules (or the whole table's) in save spelling."""
        argv = [self.command, "-w", XTABLES_WAIT, "-t", table, "-S"]
        return [*argv, chain] if chain else argv

    @property
    def commands(self) -> tuple[str, str, str]:
        return (self.command, self.restore, self.save)


SPELLINGS: dict[IPFamily, Spelling] = {
    IPFamily.IPv4: Spelling(IPFamily.IPv4, "iptables", "iptables-restore", "iptables-save"),
    IPFamily.IPv6: Spelling(IPFamily.IPv6, "ip6tables", "ip6tables-restore", "ip6tables-save"),
}


def spelling(family: IPFamily) -> Spelling:
    return SPELLINGS[family]
