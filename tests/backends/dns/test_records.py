"""Which records the dns backend writes: the Kubernetes DNS-Based Service Discovery specification."""

from __future__ import annotations

from typing import Any

from tests.backends.dns.helpers import dns_artifact, headless, headless_slice, owned, pod, records, zone
from tests.conftest import endpoint, endpoint_slice, service


def external_name(name: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns1"},
        "spec": {"type": "ExternalName", "externalName": target},
    }


# -- ClusterIP Services ------------------------------------------------------------------------------


def test_a_cluster_ip_service_has_an_a_record_for_its_cluster_ip() -> None:
    text = zone(service("web", clusterIP="172.30.0.10"))
    assert owned(text, "web.ns1.svc") == {("A", "172.30.0.10")}


def test_a_dual_stack_service_has_a_and_aaaa_records() -> None:
    svc = service("web", clusterIP="172.30.0.10", clusterIPs=["172.30.0.10", "fd00:30::10"])
    svc["spec"]["ipFamilies"] = ["IPv4", "IPv6"]
    assert owned(zone(svc), "web.ns1.svc") == {("A", "172.30.0.10"), ("AAAA", "fd00:30::10")}


def test_named_ports_have_srv_records_targeting_the_service_and_unnamed_ports_none() -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]
    text = zone(
        service("web", clusterIP="172.30.0.10", ports=ports), service("solo", clusterIP="172.30.0.11")
    )
    assert owned(text, "_http._tcp.web.ns1.svc") == {("SRV", "0 100 80 web.ns1.svc.cluster.local.")}
    assert owned(text, "_dns._udp.web.ns1.svc") == {("SRV", "0 100 53 web.ns1.svc.cluster.local.")}
    unnamed = service("bare", clusterIP="172.30.0.12", ports=[{"port": 80}])
    assert [r for r in records(zone(unnamed)) if r[1] == "SRV"] == []


def test_services_labelled_for_another_proxy_are_still_in_dns() -> None:
    svc = service("other", clusterIP="172.30.0.13")
    svc["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "cilium"}
    assert owned(zone(svc), "other.ns1.svc") == {("A", "172.30.0.13")}


def test_a_service_without_an_allocated_cluster_ip_has_no_records() -> None:
    svc = service("pending")
    svc["spec"].pop("clusterIP")
    assert [r for r in records(zone(svc)) if "pending" in r[0]] == []


# -- headless Services -------------------------------------------------------------------------------


def test_a_headless_service_answers_with_every_ready_endpoint_and_not_the_others() -> None:
    eps = [pod("10.180.0.1"), pod("10.180.0.2"), pod("10.180.0.3", ready=False)]
    text = zone(headless(), headless_slice("db", eps))
    assert owned(text, "db.ns1.svc") == {("A", "10.180.0.1"), ("A", "10.180.0.2")}


def test_publish_not_ready_addresses_publishes_not_ready_endpoints() -> None:
    eps = [pod("10.180.0.1"), pod("10.180.0.3", ready=False)]
    text = zone(headless(publishNotReadyAddresses=True), headless_slice("db", eps))
    assert owned(text, "db.ns1.svc") == {("A", "10.180.0.1"), ("A", "10.180.0.3")}


def test_endpoints_get_a_name_under_the_service_from_their_hostname_or_their_address() -> None:
    eps = [pod("10.180.0.1", hostname="db-0"), pod("10.180.0.2")]
    v6 = [pod("fd00:180::2"), pod("fd00::", hostname=None)]
    text = zone(headless(), headless_slice("db", eps), headless_slice("db", v6, address_type="IPv6"))
    assert owned(text, "db-0.db.ns1.svc") == {("A", "10.180.0.1")}
    assert owned(text, "10-180-0-2.db.ns1.svc") == {("A", "10.180.0.2")}
    assert owned(text, "fd00-180--2.db.ns1.svc") == {("AAAA", "fd00:180::2")}
    # "fd00--" would end with a hyphen, which is no hostname: written out in full instead.
    assert owned(text, "fd00-0000-0000-0000-0000-0000-0000-0000.db.ns1.svc") == {("AAAA", "fd00::")}


def test_headless_srv_records_name_each_endpoint_with_the_endpoints_own_port() -> None:
    eps = [pod("10.180.0.1", hostname="db-0"), pod("10.180.0.2"), pod("10.180.0.3", ready=False)]
    text = zone(headless(), headless_slice("db", eps))
    assert owned(text, "_pg._tcp.db.ns1.svc") == {
        ("SRV", "0 50 15432 db-0.db.ns1.svc.cluster.local."),
        ("SRV", "0 50 15432 10-180-0-2.db.ns1.svc.cluster.local."),
    }


def test_headless_slices_without_the_headless_label_or_without_ports_are_published_too() -> None:
    plain = endpoint_slice("db", endpoints=[endpoint("10.180.0.1")], ports=[])
    text = zone(headless(ports=[]), plain)
    assert owned(text, "db.ns1.svc") == {("A", "10.180.0.1")}


def test_legacy_endpoints_of_a_headless_service_are_published() -> None:
    legacy = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "db", "namespace": "ns1"},
        "subsets": [
            {
                "addresses": [{"ip": "10.180.0.1", "hostname": "db-0"}],
                "notReadyAddresses": [{"ip": "10.180.0.2"}],
                "ports": [{"name": "pg", "port": 15432}],
            }
        ],
    }
    text = zone(headless(), legacy)
    assert owned(text, "db.ns1.svc") == {("A", "10.180.0.1")}
    assert owned(text, "_pg._tcp.db.ns1.svc") == {("SRV", "0 100 15432 db-0.db.ns1.svc.cluster.local.")}


def test_a_headless_service_without_ready_endpoints_has_no_records() -> None:
    text = zone(headless(), headless_slice("db", [pod("10.180.0.1", ready=False)]))
    assert [r for r in records(text) if "db.ns1.svc" in r[0]] == []


# -- ExternalName Services ---------------------------------------------------------------------------


def test_an_external_name_service_is_a_cname_to_the_absolute_external_name() -> None:
    text = zone(external_name("alias", "db.example.com"), external_name("dotted", "api.example.org."))
    assert owned(text, "alias.ns1.svc") == {("CNAME", "db.example.com.")}
    assert owned(text, "dotted.ns1.svc") == {("CNAME", "api.example.org.")}


def test_an_external_name_dns_cannot_hold_is_a_warning_not_a_record() -> None:
    # The API server accepts a 64-character label in an RFC 1123 subdomain; DNS does not.
    artifact = dns_artifact(external_name("alias", "a" * 64 + ".example.com"))
    assert [r for r in records(artifact.text) if "alias" in r[0]] == []
    assert any("ns1/alias" in w and "externalName" in w for w in artifact.warnings)


def test_names_longer_than_dns_allows_are_skipped_with_a_warning() -> None:
    long_domain = ".".join(["d" * 60] * 3)  # 182 characters
    svc = service("s" * 63, clusterIP="172.30.0.10", ports=[{"name": "http", "port": 80}])
    artifact = dns_artifact(svc, cluster_domain=long_domain)
    assert not any(owner.startswith("s" * 63) for owner, _, _ in records(artifact.text))
    assert any("longer than 253" in w for w in artifact.warnings)
