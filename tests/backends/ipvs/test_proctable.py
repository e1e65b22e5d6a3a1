"""apply's quick check reads /proc/net/ip_vs; this is how Debian's 6.1 kernel prints it."""

from __future__ import annotations

from svc2rules.backends.ipvs import proctable
from svc2rules.syntax.ipvsadm import RealServer, VirtualServer

# Captured in the test VM (ipvsadm -A ... -s mh -b mh-port -p 600, HZ=250).
TABLE = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  AC1E0035:0035 rr  
TCP  AC1E000A:0050 mh  persistent 150000 FFFFFFFF
  -> 0AB40001:1F90      Masq    3      0          0         
SCTP  AC1E0009:0009 rr  
  -> 0AB40001:0009      Masq    0      0          0         
"""  # noqa: W291 - the kernel's trailing blanks

TCP = VirtualServer("tcp", "172.30.0.10", 80, "mh", 600, ("mh-port",), (RealServer("10.180.0.1", 8080, 3),))
UDP = VirtualServer("udp", "172.30.0.53", 53, "rr")
SCTP = VirtualServer("sctp", "172.30.0.9", 9, "rr", real_servers=(RealServer("10.180.0.1", 9, 0),))


def test_the_table_matches_the_virtual_servers_it_was_made_from() -> None:
    assert proctable.matches(TABLE, proctable.expected([TCP, UDP, SCTP]))


def test_foreign_virtual_servers_do_not_matter() -> None:
    assert proctable.matches(TABLE, proctable.expected([UDP]))


def test_a_weight_a_real_server_a_scheduler_or_a_missing_virtual_server_does() -> None:
    other_weight = VirtualServer(
        "tcp", "172.30.0.10", 80, "mh", 600, (), (RealServer("10.180.0.1", 8080, 1),)
    )
    assert not proctable.matches(TABLE, proctable.expected([other_weight]))
    assert not proctable.matches(TABLE, proctable.expected([VirtualServer("udp", "172.30.0.53", 53, "wrr")]))
    extra = VirtualServer("udp", "172.30.0.53", 53, "rr", real_servers=(RealServer("10.180.0.2", 53),))
    assert not proctable.matches(TABLE, proctable.expected([extra]))
    assert not proctable.matches(TABLE, proctable.expected([VirtualServer("tcp", "172.30.0.99", 80, "rr")]))


def test_real_servers_and_their_connections_come_from_one_read() -> None:
    found = proctable.destinations(
        TABLE + "TCP  0A000001:0050 rr  \n  -> 0AB40002:1F90      Route   1      2          3\n"
    )
    assert found[("udp", "172.30.0.53", 53)] == []
    assert found[("tcp", "172.30.0.10", 80)] == [proctable.Destination("10.180.0.1", 8080, 0, 3, 0)]
    assert found[("sctp", "172.30.0.9", 9)] == [proctable.Destination("10.180.0.1", 9, 0, 0, 0)]
    assert found[("tcp", "10.0.0.1", 80)] == [proctable.Destination("10.180.0.2", 8080, 3, 1, 5)]
