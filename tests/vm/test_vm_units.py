"""Unit tests of the VM harness's pure parts: no QEMU, no root, no network."""

from __future__ import annotations

import struct

import pytest

from .harness import _job_archive
from .vmbuild import (
    CpioTree,
    ModuleSet,
    _parse_depends,
    extract_vmlinux,
    modules_alias,
    modules_dep,
    strip_module_signature,
)


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of every member before the trailer of a newc archive."""
    members: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", pos
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return members
        members[name] = (mode, data[pos : pos + filesize])
        pos += filesize
        pos += -pos % 4


def test_cpio_tree_is_valid_newc_with_parents_and_padding() -> None:
    tree = CpioTree()
    tree.file("a/b/c.txt", b"hello")
    tree.symlink("bin/sh", "busybox")
    tree.chardev("dev/console", 5, 1)
    data = tree.write()
    assert len(data) % 512 == 0  # so that another archive can be appended
    members = read_newc(data)
    assert set(members) == {"a", "a/b", "a/b/c.txt", "bin", "bin/sh", "dev", "dev/console"}
    assert members["a/b/c.txt"] == (0o100644, b"hello")
    assert members["bin/sh"][1] == b"busybox"
    assert members["dev/console"][0] == 0o020600


def test_job_archive_quotes_env_and_rejects_bad_names() -> None:
    data = _job_archive(
        "echo hi",
        {"sub/x.sh": b"#!/bin/sh\n", "plain": b"x"},
        host_root=True,
        modules=["ip_vs", "dummy"],
        out=False,
        env={"A": "it's $HOME"},
    )
    members = read_newc(data)
    assert members["job/run.sh"] == (0o100755, b"echo hi")
    assert members["job/sub/x.sh"][0] == 0o100755 and members["job/plain"][0] == 0o100644
    assert members["init"][0] == 0o100755
    assert members["etc/svc2rules-vm/job.env"][1] == b"export A='it'\"'\"'s $HOME'\n"
    assert b"VM_MODULES='ip_vs dummy'\n" in members["etc/svc2rules-vm/job.conf"][1]
    for bad in ("../x", "/etc/passwd", "run.sh"):
        with pytest.raises(ValueError):
            _job_archive("", {bad: b""}, host_root=True, modules=[], out=False, env={})
    with pytest.raises(ValueError):
        _job_archive("", {}, host_root=True, modules=[], out=False, env={"1X": "v"})


def test_modules_dep_lists_the_most_basic_dependency_last() -> None:
    # busybox modprobe loads a modules.dep line's entries in reverse order
    mods = ModuleSet(
        paths={
            "ip_vs": "kernel/ip_vs.ko",
            "nf_conntrack": "kernel/nf_conntrack.ko",
            "libcrc32c": "kernel/lib.ko",
        },
        depends={"ip_vs": ["nf_conntrack", "libcrc32c"], "nf_conntrack": ["libcrc32c"], "libcrc32c": []},
        aliases={"ip_vs": ["net-pf-16-proto-16-family-IPVS"], "nf_conntrack": [], "libcrc32c": []},
    )
    lines = dict(line.split(":", 1) for line in modules_dep(mods).splitlines())
    assert lines["kernel/ip_vs.ko"].split() == ["kernel/nf_conntrack.ko", "kernel/lib.ko"]
    assert lines["kernel/lib.ko"] == ""
    assert modules_alias(mods) == "alias net-pf-16-proto-16-family-IPVS ip_vs\n"


def test_parse_depends_takes_first_alternative_and_first_provider() -> None:
    text = """iproute2
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Depends: libbpf1
  PreDepends: libc6
ipvsadm
  Depends: <virtual-only>
    provider-a
    provider-b
  Breaks: foo
"""
    graph = _parse_depends(text)
    assert graph["iproute2"] == ["debconf", "libbpf1", "libc6"]
    assert graph["ipvsadm"] == ["provider-a"]


def test_strip_module_signature() -> None:
    body, sig = b"\x7fELF module body", b"S" * 40
    info = struct.pack(">BBBBBxxxI", 0, 0, 2, 0, 0, len(sig))
    signed = body + sig + info + b"~Module signature appended~\n"
    assert strip_module_signature(signed) == body
    assert strip_module_signature(body) == body


def test_extract_vmlinux_refuses_non_bzimage() -> None:
    assert extract_vmlinux(b"\0" * 4096) is None
