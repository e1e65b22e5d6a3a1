"""Spelling of values inside an nft script: comments, table names, addresses, sort keys."""

from __future__ import annotations

import ipaddress
import re
import socket

from svc2rules.errors import UsageError

# nft keeps at most 128 bytes of a comment (NFTNL_UDATA_COMMENT_MAXLEN) and refuses longer ones.
COMMENT_MAX = 128
# nft's scanner ends a quoted string at the next '"' and has no escapes, so the only safe way to
# carry arbitrary text is to keep a conservative alphabet: what a validated Kubernetes name, an
# address or our own wording contains. Anything else becomes '?'.
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/\-\[\]>,;()'=+]")
# An nft identifier, kept to what every nft version accepts as a table name.
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def quote_comment(text: str) -> str:
    """A double-quoted nft string that can never close early or span lines."""
    return '"' + _COMMENT_UNSAFE.sub("?", text)[:COMMENT_MAX] + '"'


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise UsageError(
            f"--table must be a letter followed by up to 63 letters, digits, '_' or '-', got {name!r}"
        )
    return name


def ip_key(ip: str) -> bytes:
    """Sort key of an IPv4 address (numeric order)."""
    return socket.inet_aton(ip)


def net_key(cidr: str) -> tuple[bytes, int]:
    net = ipaddress.ip_network(cidr, strict=False)
    return net.network_address.packed, net.prefixlen
