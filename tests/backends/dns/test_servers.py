"""Real DNS servers answer real queries from our output: BIND's named loads the zone file as is,
dnsmasq the hosts file, and dig asks them over UDP on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.backends.dns.helpers import dns_artifact, headless, headless_slice, pod
from tests.backends.dns.servers import Server, dnsmasq, named
from tests.conftest import service

DOMAIN = "cluster.local"


def cluster() -> list[dict[str, Any]]:
    web = service(
        "web",
        clusterIP="172.30.0.10",
        clusterIPs=["172.30.0.10", "fd00:30::10"],
        ipFamilies=["IPv4", "IPv6"],
        ipFamilyPolicy="RequireDualStack",
        ports=[{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}],
    )
    other = service("other", clusterIP="172.30.0.11")
    other["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "someone-else"}
    alias = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "alias", "namespace": "ns1"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }
    db_eps = [
        pod("10.180.0.1", hostname="db-0"),
        pod("10.180.0.2", hostname="db-1"),
        pod("10.180.0.3"),
        pod("10.180.0.4", hostname="db-3", ready=False),
    ]
    return [
        web,
        other,
        alias,
        headless(),
        headless_slice("db", db_eps),
        headless_slice("db", [pod("fd00:180::5", hostname="db-4")], address_type="IPv6"),
        headless("empty"),
        headless_slice("empty", [pod("10.180.0.9", ready=False)]),
        headless("peers", publishNotReadyAddresses=True, ports=[]),
        headless_slice("peers", [pod("10.180.0.7", ready=False)], ports=[]),
    ]


@pytest.fixture(scope="module")
def bind() -> Iterator[Server]:
    with named(dns_artifact(*cluster()).text, DOMAIN) as server:
        yield server


@pytest.fixture(scope="module")
def hosts_server() -> Iterator[Server]:
    text = dns_artifact(*cluster(), dns_format="hosts").text
    with dnsmasq(text, f"web.ns1.svc.{DOMAIN}") as server:
        yield server


def fqdn(name: str) -> str:
    return f"{name}.{DOMAIN}."


def test_named_serves_the_zone_apex(bind: Server) -> None:
    soa = bind.query(DOMAIN, "SOA")
    assert soa.status == "NOERROR" and len(soa.data("SOA")) == 1
    assert bind.query(DOMAIN, "NS").data("NS") == {fqdn("ns.dns")}
    assert bind.query(fqdn("ns.dns"), "A").data("A") == {"127.0.0.1"}
    assert bind.query(fqdn("dns-version"), "TXT").data("TXT") == {'"1.1.0"'}


def test_a_and_aaaa_of_a_dual_stack_cluster_ip_service(bind: Server) -> None:
    assert bind.query(fqdn("web.ns1.svc"), "A").data("A") == {"172.30.0.10"}
    assert bind.query(fqdn("web.ns1.svc"), "AAAA").data("AAAA") == {"fd00:30::10"}
    assert bind.query(fqdn("other.ns1.svc"), "A").data("A") == {"172.30.0.11"}


def test_srv_of_named_ports(bind: Server) -> None:
    assert bind.query(fqdn("_http._tcp.web.ns1.svc"), "SRV").data("SRV") == {
        f"0 100 80 {fqdn('web.ns1.svc')}"
    }
    assert bind.query(fqdn("_dns._udp.web.ns1.svc"), "SRV").data("SRV") == {f"0 100 53 {fqdn('web.ns1.svc')}"}


def test_a_headless_name_returns_every_ready_pod_ip(bind: Server) -> None:
    assert bind.query(fqdn("db.ns1.svc"), "A").data("A") == {"10.180.0.1", "10.180.0.2", "10.180.0.3"}
    assert bind.query(fqdn("db.ns1.svc"), "AAAA").data("AAAA") == {"fd00:180::5"}
    assert bind.query(fqdn("peers.ns1.svc"), "A").data("A") == {"10.180.0.7"}  # publishNotReadyAddresses


def test_hostname_records_of_headless_endpoints(bind: Server) -> None:
    assert bind.query(fqdn("db-0.db.ns1.svc"), "A").data("A") == {"10.180.0.1"}
    assert bind.query(fqdn("10-180-0-3.db.ns1.svc"), "A").data("A") == {"10.180.0.3"}
    assert bind.query(fqdn("db-4.db.ns1.svc"), "AAAA").data("AAAA") == {"fd00:180::5"}
    assert bind.query(fqdn("db-3.db.ns1.svc"), "A").status == "NXDOMAIN"  # not ready


def test_headless_srv_names_every_ready_endpoint(bind: Server) -> None:
    targets = {fqdn(f"{host}.db.ns1.svc") for host in ("db-0", "db-1", "10-180-0-3", "db-4")}
    srv = bind.query(fqdn("_pg._tcp.db.ns1.svc"), "SRV").data("SRV")
    assert {line.split()[3] for line in srv} == targets
    assert {line.split()[2] for line in srv} == {"15432"}  # the endpoints' port, not the Service's


def test_external_name_is_a_cname(bind: Server) -> None:
    answer = bind.query(fqdn("alias.ns1.svc"), "CNAME")
    assert answer.data("CNAME") == {"db.example.com."}


def test_a_headless_service_without_ready_endpoints_is_nxdomain(bind: Server) -> None:
    assert bind.query(fqdn("empty.ns1.svc"), "A").status == "NXDOMAIN"
    assert bind.query(fqdn("nosuch.ns1.svc"), "A").status == "NXDOMAIN"


def test_dnsmasq_answers_from_the_hosts_format(hosts_server: Server) -> None:
    assert hosts_server.query(fqdn("web.ns1.svc"), "A").data("A") == {"172.30.0.10"}
    assert hosts_server.query(fqdn("web.ns1.svc"), "AAAA").data("AAAA") == {"fd00:30::10"}
    assert hosts_server.query(fqdn("db.ns1.svc"), "A").data("A") == {"10.180.0.1", "10.180.0.2", "10.180.0.3"}
    assert hosts_server.query(fqdn("db-1.db.ns1.svc"), "A").data("A") == {"10.180.0.2"}


def test_a_zone_named_refuses_is_an_error_with_its_log() -> None:
    with pytest.raises(RuntimeError, match="answered SERVFAIL") as failure, named("not a zone\n", DOMAIN):
        pass
    assert "not loaded due to errors" in str(failure.value)
