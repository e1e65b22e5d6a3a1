"""kube-proxy's chain-name hash."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given
from hypothesis import strategies as st

from svc2rules.syntax.xtables import CHAIN_NAME_MAX, hash16


def test_the_hash_is_kube_proxys() -> None:
    # kube-proxy's iptables proxier tests: portProtoHash("ns1/svc1:p80", "tcp") -> KUBE-SVC-XPGD46QRK7WJZT7O
    assert hash16("ns1/svc1:p80tcp") == "XPGD46QRK7WJZT7O"


@given(st.text())
def test_the_fast_base32_matches_the_standard_encoding(text: str) -> None:
    digest = hashlib.sha256(text.encode()).digest()
    assert hash16(text) == base64.b32encode(digest).decode()[:16]


def test_the_limit_is_the_kernels() -> None:
    assert CHAIN_NAME_MAX == 28  # XT_EXTENSION_MAXNAMELEN - 1
