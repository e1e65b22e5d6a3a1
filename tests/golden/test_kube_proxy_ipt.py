"""`--chain-prefix KUBE` reproduces kube-proxy's iptables proxier, rule for rule.

Every golden/kube-proxy-ipt-* case transcribes one ruleset asserted by kube-proxy's
pkg/proxy/iptables/proxier_test.go (each case's README names the test and the version read):
`kube-proxy.dump` is the test's expectation verbatim, `input.yaml` its Services and
EndpointSlices, `args` the fake proxier's node facts. The compile of the case is compared with
kube-proxy's expectation as kube-proxy's `assertIPTablesRulesEqual` compares (see
kube_proxy_iptables_dump).

kube-proxy's expectations depend on two facts of the host its fake proxier pretends to be, and
svc2rules' output differs from them there and only there:
  - nfacct counters (`NewFakeProxier` sets `nfAcctCounters` for
    ct_state_invalid_dropped_pkts and localhost_nps_accepted_pkts): kube-proxy adds
    `-m nfacct --nfacct-name ct_state_invalid_dropped_pkts` to the INVALID drop and one
    `-d 127.0.0.0/8 ... -m nfacct --nfacct-name localhost_nps_accepted_pkts` rule before each
    NodePort rule; both only count packets (the plain NodePort rule after it matches the same
    packets). svc2rules writes no nfacct matches: they need nfacct objects in the kernel.
  - `--random-fully` on the MASQUERADE rule: kube-proxy adds it when iptables supports it
    (`iptables.HasRandomFully()`, false for the fake); svc2rules always writes it (iptables
    >= 1.6.2).
So such a case is an expected failure (strict: it must start passing if either changes),
and `test_only_host_facts_differ` holds the rest of the ruleset to exact parity.

A case whose output differs in anything else is listed in KNOWN_DIFFERENCES with the exact
difference: both tests are expected failures there (strict), until the renderer changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.golden.cases import GOLDEN, Case, run_case
from tests.golden.kube_proxy_iptables_dump import (
    chain_differences,
    differences,
    restore_input,
    state_after,
)

CASES = [Case(p.name, p) for p in sorted(GOLDEN.glob("kube-proxy-ipt-*")) if p.is_dir()]
NFACCT = (
    "kube-proxy's fake proxier counts with nfacct (`-m nfacct --nfacct-name ...`, and the "
    "localhost NodePort counting rules); svc2rules writes no nfacct matches"
)
RANDOM_FULLY = "kube-proxy's fake iptables lacks --random-fully; svc2rules always writes it"
# The cases that differ from kube-proxy in host facts (module docstring), and why.
HOST_FACTS = {
    "kube-proxy-ipt-overall": f"{NFACCT}; {RANDOM_FULLY}",
    "kube-proxy-ipt-bad-ips": f"{NFACCT}; {RANDOM_FULLY}",
    "kube-proxy-ipt-drop-invalid-2": NFACCT,
    "kube-proxy-ipt-masquerade-1": RANDOM_FULLY,
    **{f"kube-proxy-ipt-repeated-{i}": f"{NFACCT}; {RANDOM_FULLY}" for i in range(1, 9)},
}
# The cases that differ from kube-proxy in more than host facts: the exact difference.
KNOWN_DIFFERENCES = {
    "kube-proxy-ipt-node-ports-5": (
        "TestNodePorts 'ipv6, localhost-nodeports enabled': kube-proxy's IPv6 proxier leaves "
        "filter KUBE-FIREWALL empty (IPv6 has no localhost NodePorts); svc2rules' iptables "
        "backend is IPv4 only: it skips the IPv6 Service and writes the IPv4 ruleset, whose "
        "KUBE-FIREWALL holds the 'block incoming localnet connections' DROP of 127.0.0.0/8"
    ),
}

_NFACCT = re.compile(r" -m nfacct --nfacct-name \S+")
_LOCALHOST_COUNTER = re.compile(r"^-A KUBE-NODEPORTS .* -d 127\.0\.0\.0/8 .*-m nfacct ")


def _without_host_facts(dump: str) -> str:
    """kube-proxy's expectation as it would be on a host without nfacct and with --random-fully."""
    out = []
    for line in dump.splitlines():
        if _LOCALHOST_COUNTER.match(line):
            continue
        line = _NFACCT.sub("", line)
        if line.endswith("-j MASQUERADE"):
            line += " --random-fully"
        out.append(line)
    return "\n".join(out) + "\n"


def _restores(case: Case) -> list[str]:
    """kube-proxy's restore inputs up to this case's sync: a case with a `restored-onto` file
    (TestSyncProxyRulesRepeated after its first sync) follows the case it names."""
    onto = case.path / "restored-onto"
    earlier = _restores(Case(name := onto.read_text().strip(), GOLDEN / name)) if onto.exists() else []
    return [*earlier, (case.path / "kube-proxy.dump").read_text()]


def _differences(case: Case, expectation: Callable[[str], str]) -> list[str]:
    """A whole-ruleset case is compared as assertIPTablesRulesEqual does; a case with a `chain`
    file (`TABLE CHAIN`: the test asserts one chain) as assertIPTablesChainEqual does; a case
    with a `restored-onto` file with the state its sync leaves (kube_proxy_iptables_dump)."""
    payload = run_case(case, "iptables")
    restores = [expectation(text) for text in _restores(case)]
    chain_file = case.path / "chain"
    if chain_file.exists():
        table, chain = chain_file.read_text().split()
        return chain_differences(restores[-1], payload, table, chain)
    if len(restores) > 1:
        return differences(state_after(restores), payload)
    return differences(restores[-1], payload)


def _params(reasons: dict[str, str]) -> list[object]:
    return [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=reasons[c.name]))
        if c.name in reasons
        else c
        for c in CASES
    ]


def test_every_kube_proxy_expectation_is_transcribed() -> None:
    # TestOverallIPTablesRules; TestDropInvalidRule's three cases (no nfacct, nfacct,
    # tcpLiberal); TestMasqueradeRule's two (randomFully false, true); TestNodePorts' seven
    # (its test cases in order, filter KUBE-FIREWALL each); TestBadIPs;
    # TestSyncProxyRulesRepeated's eight distinct states (steps 1-7 and 9; step 8 repeats 7).
    assert [c.name for c in CASES] == [
        "kube-proxy-ipt-bad-ips",
        "kube-proxy-ipt-drop-invalid-1",
        "kube-proxy-ipt-drop-invalid-2",
        "kube-proxy-ipt-drop-invalid-3",
        "kube-proxy-ipt-masquerade-1",
        "kube-proxy-ipt-masquerade-2",
        *(f"kube-proxy-ipt-node-ports-{i}" for i in range(1, 8)),
        "kube-proxy-ipt-overall",
        *(f"kube-proxy-ipt-repeated-{i}" for i in range(1, 9)),
    ]
    assert set(HOST_FACTS) | set(KNOWN_DIFFERENCES) <= {c.name for c in CASES}


@pytest.mark.parametrize("case", _params({**HOST_FACTS, **KNOWN_DIFFERENCES}), ids=[c.name for c in CASES])
def test_chain_prefix_kube_equals_kube_proxys_ruleset(case: Case) -> None:
    diff = _differences(case, lambda text: text)
    assert not diff, f"{case.name} differs from kube-proxy:\n" + "\n".join(diff)


@pytest.mark.parametrize("case", _params(KNOWN_DIFFERENCES), ids=[c.name for c in CASES])
def test_only_host_facts_differ(case: Case) -> None:
    diff = _differences(case, _without_host_facts)
    assert not diff, f"{case.name} differs from kube-proxy:\n" + "\n".join(diff)


# -- the comparison itself -------------------------------------------------------------------

EXPECTED = """
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/a:p -m tcp -p tcp --dport 3001 -j KUBE-SVC-A
-A KUBE-NODEPORTS -m comment --comment ns2/b:p -m tcp -p tcp --dport 3002 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/a:p cluster IP" -d 172.30.0.1 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-SVC-A -m comment --comment "ns1/a:p -> 10.0.0.1:80" -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "ns1/a:p -> 10.0.0.2:80" -j KUBE-SVC-A
COMMIT
"""

PAYLOAD = """# a header
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-NODEPORTS - [0:0]
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -m comment --comment "ns2/b:p" -m tcp -p tcp --dport 3002 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "ns1/a:p -> 10.0.0.1:80" -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/a:p cluster IP" -d 172.30.0.1 -j KUBE-SVC-A
-A KUBE-NODEPORTS -m comment --comment "ns1/a:p" -m tcp -p tcp --dport 3001 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "ns1/a:p -> 10.0.0.2:80" -j KUBE-SVC-A
-I PREROUTING 1 -j KUBE-SERVICES
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
-I INPUT 1 -j KUBE-NODEPORTS
COMMIT
"""


def test_the_comparison_sorts_as_kube_proxy_does() -> None:
    assert differences(EXPECTED, PAYLOAD) == []
    assert "--comment ns1/a:p -m" in restore_input(PAYLOAD)


def test_the_comparison_keeps_the_order_of_other_chains() -> None:
    swapped = PAYLOAD.replace("10.0.0.1:80", "10.0.0.X").replace("10.0.0.2:80", "10.0.0.1:80")
    assert differences(EXPECTED, swapped.replace("10.0.0.X", "10.0.0.2:80"))


def test_the_comparison_counts_every_word() -> None:
    assert differences(EXPECTED, PAYLOAD.replace("--dport 3002", "--dport 3003"))
    assert differences(EXPECTED, PAYLOAD.replace("ns1/a:p cluster IP", "ns1/a:p clusterIP"))
    assert differences(
        EXPECTED, PAYLOAD.replace(":KUBE-SVC-A - [0:0]\n", ":KUBE-SVC-A - [0:0]\n:KUBE-X - [0:0]\n")
    )


def test_the_state_follows_partial_restores() -> None:
    # iptables-restore --noflush: KUBE-SVC-A is left alone (not declared), KUBE-SERVICES is
    # flushed and rewritten, KUBE-SEP-B declared and deleted.
    before = (
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-B - [0:0]\n"
        "-A KUBE-SERVICES -j KUBE-SVC-A\n-A KUBE-SVC-A -j KUBE-SEP-B\n-A KUBE-SEP-B -j DROP\nCOMMIT\n"
    )
    partial = (
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-B - [0:0]\n-A KUBE-SERVICES -j ACCEPT\n"
        "-X KUBE-SEP-B\nCOMMIT\n"
    )
    assert state_after([before, partial]) == (
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n"
        "-A KUBE-SERVICES -j ACCEPT\n-A KUBE-SVC-A -j KUBE-SEP-B\nCOMMIT\n"
    )
