"""The ipset writer and reader: what `ipset restore` reads, what `ipset save` / `list` print."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from svc2rules.family import IPFamily
from svc2rules.syntax import ipset
from svc2rules.syntax.ipset import Entry, IpSet, SetOptions

HASH4 = SetOptions(family=IPFamily.IPv4, hashsize=1024, maxelem=65536, comment=True)
HASH6 = SetOptions(family=IPFamily.IPv6, hashsize=1024, maxelem=65536, comment=True)
BITMAP = SetOptions(range="0-65535", comment=True)

# Captured from ipset v7.17 (`ipset save` after restoring what the tests below write).
SAVED = """\
create CIP hash:ip,port family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x13703c32
add CIP 172.30.0.10,tcp:80 comment "ns1/web:http"
create NP bitmap:port range 0-65535 comment
add NP 30080 comment "ns1/web:http"
create CIP6 hash:ip,port family inet6 hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xa008f4db
add CIP6 fd00::10,udp:53
create SRC hash:ip,port,net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x93be9cbc
add SRC 1.2.3.4,tcp:80,10.1.1.1
add SRC 1.2.3.4,tcp:80,10.0.0.0/8
"""
LISTED = """\
Name: NP
Type: bitmap:port
Revision: 3
Header: range 0-65535 comment
Size in memory: 532575
References: 0
Number of entries: 2
Members:
30080 comment "ns1/web:http"
30081

Name: CIP6
Type: hash:ip,port
Revision: 6
Header: family inet6 hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xa008f4db
Size in memory: 360
References: 0
Number of entries: 0
Members:
"""


def test_a_set_is_written_as_create_then_its_entries_in_ipset_save_spelling() -> None:
    cluster_ips = IpSet(
        "CIP",
        "hash:ip,port",
        HASH4,
        (Entry("172.30.0.10,tcp:80", "ns1/web:http"), Entry("172.30.0.11,udp:53")),
    )
    assert ipset.write(ipset.filled(cluster_ips)) == (
        "create CIP hash:ip,port family inet hashsize 1024 maxelem 65536 comment\n"
        'add CIP 172.30.0.10,tcp:80 comment "ns1/web:http"\n'
        "add CIP 172.30.0.11,udp:53\n"
    )


def test_the_family_is_spelt_inet_or_inet6_and_a_bitmap_has_none() -> None:
    assert ipset.Create(IpSet("A", "hash:ip", HASH6)).line().startswith("create A hash:ip family inet6 ")
    assert (
        ipset.Create(IpSet("B", "bitmap:port", BITMAP)).line() == "create B bitmap:port range 0-65535 comment"
    )


def test_every_command_of_a_batch() -> None:
    commands: list[ipset.Command] = [
        ipset.Note("what follows"),
        ipset.Flush("A"),
        ipset.Delete("A", "1.2.3.4,tcp:80"),
        ipset.Swap("A", "A-NEW"),
        ipset.Destroy("A-NEW"),
    ]
    assert ipset.write(commands).splitlines() == [
        "# what follows",
        "flush A",
        "del A 1.2.3.4,tcp:80",
        "swap A A-NEW",
        "destroy A-NEW",
    ]


def test_a_comment_that_would_end_its_quotes_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        ipset.Add("A", Entry("1.2.3.4", 'x" 5.6.7.8')).line()


def test_elements_are_spelt_as_ipset_save_prints_them() -> None:
    assert ipset.ip_port("fd00::1", "tcp", 80) == "fd00::1,tcp:80"
    assert ipset.ip_port_ip("10.180.0.1", "udp", 53, "10.180.0.1") == "10.180.0.1,udp:53,10.180.0.1"
    # A host CIDR loses its prefix length, as `ipset save` prints it; a network keeps it.
    assert ipset.ip_port_net("1.2.3.4", "tcp", 80, "10.1.1.1/32") == "1.2.3.4,tcp:80,10.1.1.1"
    assert ipset.ip_port_net("1.2.3.4", "tcp", 80, "10.0.0.0/8") == "1.2.3.4,tcp:80,10.0.0.0/8"
    assert ipset.ip_port_net("fd00::1", "tcp", 80, "fd00:10::5/128") == "fd00::1,tcp:80,fd00:10::5"
    assert ipset.read_ip_port("172.30.0.10,sctp:9") == ("172.30.0.10", "sctp", 9)
    assert ipset.read_ip_port("30080") is None


def test_a_save_reads_back_as_sets_with_their_options_and_entries() -> None:
    sets = ipset.read_save(SAVED)
    assert sets["CIP"] == IpSet(
        "CIP",
        "hash:ip,port",
        SetOptions(IPFamily.IPv4, 1024, 65536, None, True, ("bucketsize", "12", "initval", "0x13703c32")),
        (Entry("172.30.0.10,tcp:80", "ns1/web:http"),),
    )
    assert sets["NP"].options == BITMAP
    assert sets["CIP6"].options.family is IPFamily.IPv6
    assert sets["SRC"].entries == (Entry("1.2.3.4,tcp:80,10.1.1.1"), Entry("1.2.3.4,tcp:80,10.0.0.0/8"))


def test_options_read_back_are_written_in_the_order_read() -> None:
    (line,) = [line for line in SAVED.splitlines() if line.startswith("create CIP ")]
    assert ipset.Create(ipset.read_save(SAVED)["CIP"]).line() == line


def test_a_save_is_read_for_the_names_asked_only() -> None:
    assert set(ipset.read_save(SAVED, {"NP", "MISSING"})) == {"NP"}


def test_a_plain_listing_reads_as_the_same_sets() -> None:
    listed = ipset.read_list(LISTED)
    assert listed["NP"] == IpSet(
        "NP", "bitmap:port", BITMAP, (Entry("30080", "ns1/web:http"), Entry("30081"))
    )
    assert listed["CIP6"].entries == ()
    assert listed["CIP6"].options.family is IPFamily.IPv6
    assert set(ipset.read_list(LISTED, {"CIP6"})) == {"CIP6"}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ipset in a private network namespace")
@pytest.mark.skipif(shutil.which("ipset") is None or shutil.which("unshare") is None, reason="needs ipset")
def test_what_is_written_ipset_restores_and_saves_back_as_written() -> None:
    sets = [
        IpSet("CIP", "hash:ip,port", HASH4, (Entry("172.30.0.10,tcp:80", "ns1/web:http"),)),
        IpSet("CIP6", "hash:ip,port", HASH6, (Entry(ipset.ip_port("fd00::10", "udp", 53)),)),
        IpSet("NP", "bitmap:port", BITMAP, (Entry("30080", "a b"),)),
        IpSet(
            "SRC", "hash:ip,port,net", HASH4, (Entry(ipset.ip_port_net("1.2.3.4", "tcp", 80, "10.1.1.1/32")),)
        ),
    ]
    payload = ipset.write(command for s in sets for command in ipset.filled(s))
    proc = subprocess.run(
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            f"{' '.join(ipset.RESTORE_ARGV)} && {' '.join(ipset.SAVE_ARGV)}",
        ],
        input=payload,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    saved = ipset.read_save(proc.stdout)
    for s in sets:
        assert saved[s.name].type == s.type
        assert saved[s.name].entries == s.entries
        assert saved[s.name].options.family == s.options.family
        assert saved[s.name].options.comment
