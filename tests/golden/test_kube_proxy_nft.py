"""`--nft-layout kube-proxy` reproduces kube-proxy's nftables proxier, object for object.

Every golden/kube-proxy-nft-* case transcribes one ruleset asserted by kube-proxy's
pkg/proxy/nftables/proxier_test.go (commit 81810de635aa; each case's README names the test and
step): `kube-proxy.dump` is the test's expectation verbatim, `input.yaml` its Services and
EndpointSlices, `args` its node facts. The compile of the case must equal kube-proxy's
expectation as kube_proxy_dump.Normal compares them (the README of each case says what that is).
"""

from __future__ import annotations

import pytest

from tests.golden.cases import GOLDEN, Case, run_case
from tests.golden.kube_proxy_dump import Normal, of_script, parse_dump

TABLE = "kube-proxy"
CASES = [Case(p.name, p) for p in sorted(GOLDEN.glob("kube-proxy-nft-*")) if p.is_dir()]


def _compare(case: Case) -> None:
    expected = parse_dump((case.path / "kube-proxy.dump").read_text()).without_stale_chains()
    actual = of_script(run_case(case, "nftables"), TABLE)
    differences = expected.differences(actual)
    assert not differences, f"{case.name} differs from kube-proxy:\n" + "\n".join(differences)


def test_every_kube_proxy_expectation_is_transcribed() -> None:
    # TestOverallNFTablesRules, the nine distinct states of TestSyncProxyRulesRepeated (its
    # steps 10-12 assert step 8's again), TestSyncProxyRulesStartup, TestBadIPs.
    assert len(CASES) == 12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kube_proxy_layout_equals_kube_proxys_ruleset(case: Case) -> None:
    _compare(case)


# -- the comparison itself -------------------------------------------------------------------

DUMP = """
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add set ip kube-proxy affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 3h ; }
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy service-A/b
add chain ip kube-proxy endpoint-A/c
add chain ip kube-proxy endpoint-A/d
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-output ip daddr 1.2.3.4 drop comment "first"
add rule ip kube-proxy endpoint-A/c meta l4proto tcp dnat to 10.0.0.1:80
add element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 : goto service-A/b }
add element ip kube-proxy service-ips { 1.2.3.5 . tcp . 80 comment "ns/svc:p" : goto endpoint-A/c }
"""


def test_the_comparison_ignores_element_order_only() -> None:
    normal = parse_dump(DUMP)
    lines = DUMP.strip().splitlines()
    assert not normal.differences(parse_dump("\n".join([*lines[:-2], lines[-1], lines[-2]])))
    swapped = "\n".join([*lines[:7], lines[8], lines[7], *lines[9:]])
    assert normal.differences(parse_dump(swapped)) == [
        "rules of chain nat-output: expected [('jump services', ''), ('ip daddr 1.2.3.4 drop', 'first')], "
        "got [('ip daddr 1.2.3.4 drop', 'first'), ('jump services', '')]"
    ]
    assert normal.differences(parse_dump(DUMP.replace('comment "first"', ""))), "a rule's comment counts"
    assert normal.differences(parse_dump(DUMP.replace("timeout 3h", "timeout 2h"))), "a declaration counts"
    assert normal.collections["set", "affinity-X"] == ("ipv4_addr", ("dynamic", "timeout"), 10800, "")


def test_only_unreferenced_empty_service_chains_count_as_stale() -> None:
    pruned = parse_dump(DUMP).without_stale_chains()
    # service-A/b is referenced by an element, endpoint-A/c has rules: both stay.
    assert set(pruned.chains) == {"nat-output", "service-A/b", "endpoint-A/c"}


def test_a_missing_object_is_a_difference() -> None:
    normal = parse_dump(DUMP)
    fewer = Normal(normal.name, normal.comment, dict(normal.collections), dict(normal.elements))
    assert any(d.startswith("chain nat-output") for d in normal.differences(fewer))
