"""Chain names follow kube-proxy's hash recipe behind our own prefix."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Protocol, ServicePort, ServicePortKey
from svc2rules.naming import IPTABLES_CHAIN_MAX, ChainNames, _hash16, endpoint_hash, port_proto_hash


def test_hashes_match_kube_proxy_golden_chain_names() -> None:
    # From kube-proxy's iptables proxier tests: ns1/svc1:p80 -> KUBE-SVC-XPGD46QRK7WJZT7O,
    # endpoint 10.180.0.1:80 -> KUBE-SEP-SXIVWICOYRO3J4NJ.
    assert port_proto_hash("ns1/svc1:p80", "tcp") == "XPGD46QRK7WJZT7O"
    assert endpoint_hash("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "SXIVWICOYRO3J4NJ"


def test_chain_names_fit_the_iptables_limit_and_use_our_prefix() -> None:
    names = ChainNames()
    sp = ServicePort(
        ServicePortKey("n" * 63, "s" * 63, "p" * 15, Protocol.SCTP), IPFamily.IPv4, "172.30.0.1", 80
    )
    ep = Endpoint("10.0.0.1", 80, True, True, False, True)
    for chain in (
        names.cluster_policy(sp),
        names.local_policy(sp),
        names.external(sp),
        names.firewall_chain(sp),
        names.endpoint(sp, ep),
        names.external_services,
        names.proxy_firewall,
    ):
        assert chain.startswith("SVC2R-")
        assert len(chain) <= IPTABLES_CHAIN_MAX
        assert names.is_service_chain(chain) == (chain.split("-")[1] in ("SVC", "SVL", "EXT", "FW", "SEP"))


@pytest.mark.parametrize("prefix", ["", "TOO-LONG-PREFIX", "BAD PREFIX", 'A"B'])
def test_unsafe_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        ChainNames(prefix)


@given(st.text())
def test_fast_base32_matches_the_standard_encoding(text: str) -> None:
    digest = hashlib.sha256(text.encode()).digest()
    assert _hash16(text) == base64.b32encode(digest).decode()[:16]
