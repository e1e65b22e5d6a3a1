"""The nft command lines an applier runs, and what nft says when it refuses a script.

Commands are argv lists for the host's runner; scripts go through files (`nft -f FILE`): nft
reads a file whole before it sends anything to the kernel, so a script is never taken in
part, even when whoever wrote the file dies (see writer.py).
"""

from __future__ import annotations

import re

from svc2rules.family import IPFamily
from svc2rules.syntax.nftables.spelling import spelling

NFT = "nft"
# `FILE:LINE:COLUMN[-COLUMN]: Error: MESSAGE`
_ERROR_LINE = re.compile(r":(\d+):\d+(?:-\d+)?: Error: (.*)")


# `nft -f -`: the script is read whole from standard input (the runner gives it a file).
STDIN = "-"


def load(path: str, *, check: bool = False) -> list[str]:
    """`nft -f FILE` (with `check`: `nft -c -f FILE`, which runs the batch and aborts it)."""
    return [NFT, "-c", "-f", path] if check else [NFT, "-f", path]


def list_table(family: IPFamily, table: str) -> list[str]:
    return [NFT, "list", "table", spelling(family).table_family, table]


def list_set(family: IPFamily, table: str, name: str) -> list[str]:
    """Lists one set: the kernel reads only that set, however large the table is."""
    return [NFT, "list", "set", spelling(family).table_family, table, name]


def list_tables(family: IPFamily) -> list[str]:
    return [NFT, "list", "tables", spelling(family).table_family]


def load_and_list_in_scratch(family: IPFamily, table: str) -> list[str]:
    """Load the script on stdin into a private network namespace, then list the table it
    made: the kernel's own spelling of a table that is not loaded. (Two nft runs: a `list`
    inside the script would run before the script's batch is committed, and list no rules.)"""
    script = f"{NFT} -f {STDIN} && {NFT} list table {spelling(family).table_family} {table}"
    return ["unshare", "--net", "--", "sh", "-c", script]


def error_location(output: str) -> tuple[int, str] | None:
    """(line of the script, message) of the first error nft reports, if it names a line."""
    match = _ERROR_LINE.search(output)
    return (int(match.group(1)), match.group(2).strip()) if match else None


def is_missing(output: str) -> bool:
    """Whether nft refused because the object does not exist (ENOENT)."""
    return "No such file" in output
