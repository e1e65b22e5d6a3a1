"""Chain names: the kernel's limit and kube-proxy's hash recipe for names derived from data.

kube-proxy names a chain after a hash of what it serves (base32 of sha256, first 16
characters), so names are stable across runs and fit the limit whatever they are made of.
What goes into the hash is the caller's business.
"""

from __future__ import annotations

import hashlib

# XT_EXTENSION_MAXNAMELEN (29) including the terminating NUL.
CHAIN_NAME_MAX = 28
HASH_LENGTH = 16

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Every 10-bit group as its two base32 characters: 16 characters are 80 bits, i.e.
# exactly the first 10 bytes of the digest, so eight lookups spell the whole name.
_PAIRS = tuple(_B32[i >> 5] + _B32[i & 31] for i in range(1024))


def hash16(text: str) -> str:
    """base32(sha256(text))[:16], as kube-proxy computes it (base64.b32encode is slow pure Python)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    return "".join(_PAIRS[(n >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20, 10, 0))
