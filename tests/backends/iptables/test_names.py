"""The iptables backend's chain names follow kube-proxy's hash recipe behind our own prefix."""

from __future__ import annotations

import pytest

from svc2rules.backends.iptables.names import ChainNames, endpoint_hash, port_proto_hash
from svc2rules.errors import UsageError
from svc2rules.family import IPFamily
from svc2rules.ir import Endpoint, Protocol, ServicePort, ServicePortKey
from svc2rules.syntax.xtables import CHAIN_NAME_MAX


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
        assert len(chain) <= CHAIN_NAME_MAX
        assert names.is_service_chain(chain) == (chain.split("-")[1] in ("SVC", "SVL", "EXT", "FW", "SEP"))


@pytest.mark.parametrize("prefix", ["", "TOO-LONG-PREFIX", "ABCDEFGH", "BAD PREFIX", 'A"B'])
def test_unsafe_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="--chain-prefix"):
        ChainNames(prefix)


def test_the_longest_prefix_allowed_still_fits_every_chain_name() -> None:
    names = ChainNames("ABCDEFG")
    sp = ServicePort(ServicePortKey("ns", "svc", "p", Protocol.TCP), IPFamily.IPv4, "172.30.0.1", 80)
    ep = Endpoint("10.0.0.1", 80, True, True, False, True)
    assert len(names.endpoint(sp, ep)) == CHAIN_NAME_MAX


def test_only_our_own_chains_are_ours() -> None:
    names = ChainNames()
    assert (
        names.owns("SVC2R-SERVICES")
        and names.owns("SVC2R-SEP-ABCDEFGHIJKLMNOP")
        and names.owns("SVC2R-APPLIED")
    )
    # The ipvs and userspace backends keep their chains under the same prefix.
    assert not names.owns("SVC2R-IPVS-SERVICES") and not names.owns("SVC2R-USERSPACE-PORTALS")
    assert not names.owns("KUBE-SERVICES")
