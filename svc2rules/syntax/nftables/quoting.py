"""Strings inside an nft script: quoted comments and object names."""

from __future__ import annotations

import re

# nft keeps at most 128 bytes of a comment (NFTNL_UDATA_COMMENT_MAXLEN) and refuses longer ones.
COMMENT_MAX = 128
# nft's scanner ends a quoted string at the next '"' and has no escapes, so the only safe way to
# carry arbitrary text is to keep a conservative alphabet: what a validated Kubernetes name, an
# address or our own wording contains. Anything else becomes '?'.
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/\-\[\]>,;()'=+@]")
# An nft identifier, kept to what every nft version accepts as a table name.
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_QUOTED = re.compile(r'"([^"]*)"')


def quote_comment(text: str) -> str:
    """A double-quoted nft string that can never close early or span lines."""
    return '"' + _COMMENT_UNSAFE.sub("?", text)[:COMMENT_MAX] + '"'


def script_comment(text: str) -> str:
    """Text for a `#` line: one line, in the same safe alphabet as a quoted comment."""
    return _COMMENT_UNSAFE.sub("?", text)


def is_table_name(name: str) -> bool:
    return _TABLE_NAME.fullmatch(name) is not None


def quoted_strings(line: str) -> list[str]:
    """The quoted strings of one line of a script or a listing, without their quotes."""
    return _QUOTED.findall(line)
