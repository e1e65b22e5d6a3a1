"""The ipvsadm writer and reader: `ipvsadm -R` input and single commands, `ipvsadm -S -n` output."""

from __future__ import annotations

from svc2rules.family import IPFamily
from svc2rules.syntax import ipvsadm
from svc2rules.syntax.ipvsadm import Forward, RealServer, VirtualServer

WEB = VirtualServer(
    "tcp",
    "172.30.0.10",
    80,
    "rr",
    real_servers=(RealServer("10.180.0.1", 8080), RealServer("10.180.0.2", 8080)),
)
STICKY = VirtualServer("udp", "172.30.0.53", 53, "mh", 600, ("mh-fallback", "mh-port"))
V6 = VirtualServer("sctp", "fd00::10", 9, "rr", real_servers=(RealServer("fd00:10::1", 9, 2),))
# Captured from ipvsadm 1.31 (`ipvsadm -S -n` in the test VM), plus a firewall-mark service.
SAVED = """\
-A -t 172.30.0.10:80 -s rr
-a -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 1
-a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1
-A -u 172.30.0.53:53 -s mh -p 600 -b mh-port,mh-fallback
-A --sctp-service [fd00::10]:9 -s rr
-a --sctp-service [fd00::10]:9 -r [fd00:10::1]:9 -m -w 2
-A -f 5 -s rr
-a -f 5 -r 10.180.0.9:0 -g -w 1
"""


def test_restore_input_is_each_service_then_its_real_servers() -> None:
    assert ipvsadm.write([WEB, STICKY]) == (
        "-A -t 172.30.0.10:80 -s rr\n"
        "-a -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 1\n"
        "-a -t 172.30.0.10:80 -r 10.180.0.2:8080 -m -w 1\n"
        "-A -u 172.30.0.53:53 -s mh -p 600 -b mh-fallback,mh-port\n"
    )


def test_an_ipv6_service_and_real_server_are_in_brackets() -> None:
    assert V6.family is IPFamily.IPv6
    assert ipvsadm.write([V6]).splitlines() == [
        "-A --sctp-service [fd00::10]:9 -s rr",
        "-a --sctp-service [fd00::10]:9 -r [fd00:10::1]:9 -m -w 2",
    ]


def test_single_commands_edit_and_delete_in_place() -> None:
    rs = RealServer("10.180.0.1", 8080, 0)
    assert ipvsadm.edit_service(STICKY) == "-E -u 172.30.0.53:53 -s mh -p 600 -b mh-fallback,mh-port"
    assert ipvsadm.delete_service(WEB) == "-D -t 172.30.0.10:80"
    assert ipvsadm.edit_real_server(WEB, rs) == "-e -t 172.30.0.10:80 -r 10.180.0.1:8080 -m -w 0"
    assert ipvsadm.delete_real_server(WEB, rs) == "-d -t 172.30.0.10:80 -r 10.180.0.1:8080"
    assert ipvsadm.add_real_server(WEB, RealServer("10.0.0.1", 80, forward=Forward.ROUTE)).endswith("-g -w 1")


def test_a_save_reads_back_as_virtual_servers_with_their_real_servers() -> None:
    read = ipvsadm.read_save(SAVED)
    assert read == [WEB, STICKY, V6]  # the firewall-mark service is not an address:port one


def test_what_is_written_reads_back_the_same() -> None:
    assert ipvsadm.read_save(ipvsadm.write([WEB, STICKY, V6])) == [WEB, STICKY, V6]


def test_a_bare_persistence_option_is_ipvsadms_default_timeout() -> None:
    (vs,) = ipvsadm.read_save("-A -t 1.2.3.4:80 -s rr -p\n")
    assert vs.persistence == ipvsadm.DEFAULT_PERSISTENCE


def test_settings_that_an_edit_changes_are_told_from_the_key_and_real_servers() -> None:
    moved = VirtualServer("tcp", "172.30.0.10", 80, "rr")
    assert WEB.same_settings(moved)
    assert not WEB.same_settings(VirtualServer("tcp", "172.30.0.10", 80, "rr", 10800))
    assert WEB.without_real_servers() == moved


def test_ipvs_sysctls_live_under_one_tree_for_both_families() -> None:
    assert ipvsadm.sysctl(IPFamily.IPv4, "conntrack") == ipvsadm.sysctl(IPFamily.IPv6, "conntrack")
    assert ipvsadm.sysctl(IPFamily.IPv4, "conntrack").endswith(".vs.conntrack")
