"""The ClientIP affinity check rules carry kube-proxy's comment (issue 14, point 7):
pkg/proxy/iptables/proxier.go writeServiceToEndpointRules comments both the `--rcheck` rule and
the load-balancing rule of an endpoint `"ns/svc:port -> ip:port"`."""

from __future__ import annotations

from typing import Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.iptables.render import render_iptables
from tests.conftest import endpoint, endpoint_slice, service

from .helpers import plan_of, web

STICKY: dict[str, Any] = {
    "sessionAffinity": "ClientIP",
    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}},
}


def test_the_rcheck_rule_names_the_service_port_and_the_endpoint() -> None:
    text = render_iptables(plan_of(web(7, **STICKY)), RenderOptions()).text
    checks = [line for line in text.splitlines() if "--rcheck" in line]
    assert len(checks) == 2
    for line, address in zip(checks, ("10.180.7.1:8080", "10.180.7.2:8080"), strict=True):
        assert f'-m comment --comment "shop/web7:http -> {address}" -m recent --name ' in line
        assert line.endswith("--rcheck --seconds 300 --reap -j " + line.split("--name ")[1].split()[0])


def test_with_kube_proxy_chain_names_the_rules_read_as_kube_proxy_writes_them() -> None:
    options: RenderOptions[None] = RenderOptions(chain_prefix="KUBE")
    text = render_iptables(plan_of(web(7, **STICKY)), options).text
    [first, _] = [line for line in text.splitlines() if "--rcheck" in line]
    chain = first.split()[1]
    sep = first.split("--name ")[1].split()[0]
    assert chain.startswith("KUBE-SVC-") and sep.startswith("KUBE-SEP-")
    assert first == (
        f'-A {chain} -m comment --comment "shop/web7:http -> 10.180.7.1:8080" '
        f"-m recent --name {sep} --rcheck --seconds 300 --reap -j {sep}"
    )


def test_kube_proxys_own_expectation_is_reproduced() -> None:
    """The KUBE-SVC chain of ns5/svc5 in kube-proxy's TestOverallIPTablesRules
    (pkg/proxy/iptables/proxier_test.go; the same in v1.30 - v1.35), with --chain-prefix KUBE."""
    objects = [
        service(
            "svc5",
            "ns5",
            clusterIP="172.30.0.45",
            ports=[{"name": "p80", "port": 80, "targetPort": 80}],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}},
        ),
        endpoint_slice(
            "svc5", "ns5", [endpoint("10.180.0.3", node=None)], ports=[{"name": "p80", "port": 80}]
        ),
    ]
    options: RenderOptions[None] = RenderOptions(chain_prefix="KUBE")
    text = render_iptables(plan_of(objects), options).text
    svc_rules = [line for line in text.splitlines() if line.startswith("-A KUBE-SVC-NUKIZ6OKUXPJNT4C ")]
    assert svc_rules == [
        '-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        '-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent '
        "--name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN",
        '-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" '
        "-j KUBE-SEP-I77PXRDZVX7PMWMN",
    ]
