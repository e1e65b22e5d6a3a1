"""The zone file around the records (SOA, NS, glue, schema version), the hosts format, the flags."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from svc2rules.cli import app
from tests.backends.dns.helpers import dns_artifact, headless, headless_slice, owned, pod, records, zone
from tests.conftest import NODE_ARGS, service, to_yaml

runner = CliRunner()


def kube_dns(cluster_ip: str = "172.30.0.10") -> dict[str, object]:
    return service("kube-dns", "kube-system", clusterIP=cluster_ip, ports=[{"name": "dns", "port": 53}])


def test_a_zone_file_starts_with_origin_ttl_soa_ns_glue_and_the_schema_version() -> None:
    text = zone(kube_dns())
    directives = [line for line in text.splitlines() if line.startswith("$")]
    assert directives == ["$ORIGIN cluster.local.", "$TTL 5"]
    soa = [r for r in records(text) if r[1] == "SOA"]
    assert len(soa) == 1 and soa[0][0] == "@"
    mname, rname, serial, *timers = soa[0][2].split()
    assert (mname, rname) == ("ns.dns.cluster.local.", "hostmaster.cluster.local.")
    assert 0 < int(serial) < 2**31 and timers == ["7200", "1800", "86400", "5"]
    assert owned(text, "@") >= {("NS", "ns.dns.cluster.local.")}
    assert owned(text, "dns-version") == {("TXT", '"1.1.0"')}


def test_the_name_server_glue_is_the_kube_dns_cluster_ip_else_loopback_else_as_given() -> None:
    assert owned(zone(kube_dns("172.30.0.53")), "ns.dns") == {("A", "172.30.0.53")}
    assert owned(zone(service("web", clusterIP="172.30.0.1")), "ns.dns") == {("A", "127.0.0.1")}
    assert owned(zone(kube_dns(), dns_server_ip="fd00::53"), "ns.dns") == {("AAAA", "fd00::53")}


def test_the_serial_depends_on_the_records_only() -> None:
    def serial(text: str) -> str:
        return next(data for _, rtype, data in records(text) if rtype == "SOA").split()[2]

    one = service("web", clusterIP="172.30.0.1")
    two = service("api", clusterIP="172.30.0.2")
    assert serial(zone(one, two)) == serial(zone(two, one)) == serial(zone(one, two))
    assert serial(zone(one)) != serial(zone(one, two))


def test_the_cluster_domain_is_the_origin_and_the_suffix_of_every_absolute_name() -> None:
    text = zone(
        service("web", clusterIP="172.30.0.1", ports=[{"name": "http", "port": 80}]),
        cluster_domain="K8s.Example.",
    )
    assert "$ORIGIN k8s.example." in text.splitlines()
    assert owned(text, "_http._tcp.web.ns1.svc") == {("SRV", "0 100 80 web.ns1.svc.k8s.example.")}


def test_the_hosts_format_has_one_line_per_address_and_name() -> None:
    eps = [pod("10.180.0.1", hostname="db-0"), pod("10.180.0.2")]
    objects = (service("web", clusterIP="172.30.0.1"), headless(), headless_slice("db", eps))
    artifact = dns_artifact(*objects, dns_format="hosts")
    lines = [line for line in artifact.text.splitlines() if not line.startswith("#")]
    assert lines == [
        "10.180.0.1 db.ns1.svc.cluster.local",
        "10.180.0.2 db.ns1.svc.cluster.local",
        "10.180.0.2 10-180-0-2.db.ns1.svc.cluster.local",
        "10.180.0.1 db-0.db.ns1.svc.cluster.local",
        "172.30.0.1 web.ns1.svc.cluster.local",
    ]
    assert any("SRV record(s) cannot be written as hosts lines" in w for w in artifact.warnings)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cluster-domain", "evil.local\n$INCLUDE /etc/shadow", "--cluster-domain: invalid cluster domain"),
        ("--cluster-domain", "-bad.local", "--cluster-domain: invalid cluster domain"),
        ("--dns-format", "bind", "--dns-format must be one of zone, hosts"),
        ("--dns-server-ip", "10.0.0.300", "--dns-server-ip: invalid IP address"),
    ],
)
def test_bad_dns_flags_are_one_line_on_stderr_and_exit_2(flag: str, value: str, message: str) -> None:
    result = runner.invoke(
        app, ["compile", "--backend", "dns", *NODE_ARGS, flag, value], input=to_yaml(service())
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {message}"), result.stderr


def test_the_compile_command_writes_the_zone_to_stdout() -> None:
    result = runner.invoke(
        app,
        ["compile", "--backend", "dns", "--cluster-domain", "c.test", "--dns-format", "zone", *NODE_ARGS],
        input=to_yaml(service("web", clusterIP="172.30.0.1")),
    )
    assert result.exit_code == 0, result.stderr
    assert owned(result.stdout, "web.ns1.svc") == {("A", "172.30.0.1")}
    assert "$ORIGIN c.test." in result.stdout
