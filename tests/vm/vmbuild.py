"""Build and cache the kernel + initramfs of the svc2rules test VM from Debian packages.

This machine's kernel has no IPVS and no dummy interfaces, so IPVS tests boot Debian's own
kernel in QEMU (see ``harness.py`` and ``docs/vm.md``).  This module assembles what QEMU boots:

* the kernel: the ELF ``vmlinux`` unpacked from Debian's ``vmlinuz`` (PVH entry, which saves
  the in-guest xz decompression: ~2.5 s under TCG), or the bzImage if that is not possible;
* an uncompressed initramfs: dynamic busybox, iproute2, ipvsadm, ipset, iptables, nftables,
  their shared libraries and the kernel modules for IPVS, netfilter, ipset, dummy, veth,
  9p/virtio and overlayfs (with their dependency closure).

Everything comes from ``apt-get download`` + ``dpkg-deb -x``; nothing is compiled, and
nothing outside this repository is needed.  Standard library only, so that the plain system
``python3`` can run it (``tests/vm/build.sh``).

Cache layout (``$SVC2RULES_VM_CACHE``, default ``$XDG_CACHE_HOME/svc2rules-vm``)::

    lock                     flock(2): one builder at a time
    debs/                    downloaded .debs (only the current set is kept)
    images/<key>/            vmlinux or vmlinuz, initramfs.cpio, manifest.json
    build-*/                 scratch of a running (or crashed) build

``<key>`` hashes the exact package versions and this file's source, so a Debian update or a
change of the recipe builds a new image, and an image is never modified once it is complete
(it is renamed into place).
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

Log = Callable[[str], None]

KERNEL_META_PACKAGE = "linux-image-amd64"
# Userland of the initramfs.  busybox is the *dynamic* build on purpose: busybox-static is
# configured with "prefer applets", so `ip` would run busybox's ip (which cannot create veth
# pairs) even with iproute2 installed.
TOOL_PACKAGES = ("busybox", "iproute2", "ipvsadm", "ipset", "iptables", "nftables", "netbase")
# package -> programs copied to /usr/sbin of the initramfs (searched in {,usr/}{bin,sbin})
PROGRAMS = {
    "iproute2": ("ip", "tc", "bridge"),  # not ss: it pulls in 3 MB of krb5/selinux libraries
    "ipvsadm": ("ipvsadm", "ipvsadm-save", "ipvsadm-restore"),
    "ipset": ("ipset",),
    "iptables": ("xtables-nft-multi", "xtables-legacy-multi"),
    "nftables": ("nft",),
}
# What Debian's alternatives would point at: the nft backend, as on a default bookworm host.
_IPTABLES_NAMES = tuple(
    f"{fam}{suffix}"
    for fam in ("iptables", "ip6tables")
    for suffix in ("", "-save", "-restore", "-nft", "-nft-save", "-nft-restore", "-translate")
)
XTABLES_LINKS = {
    "xtables-nft-multi": (*_IPTABLES_NAMES, "ebtables", "ebtables-nft", "arptables", "arptables-nft"),
    "xtables-legacy-multi": tuple(
        f"{fam}-legacy{suffix}" for fam in ("iptables", "ip6tables") for suffix in ("", "-save", "-restore")
    ),
}
# Kernel modules: these directories/files (relative to lib/modules/<release>/) plus their
# dependency closure.  ip_vs_ftp and friends come along with net/netfilter; that is cheap.
MODULE_DIRS = (
    "kernel/net/netfilter/",  # nf_tables, xt_*, conntrack, nat, ipset, IPVS
    "kernel/net/ipv4/netfilter/",
    "kernel/net/ipv6/netfilter/",
    "kernel/net/bridge/",  # bridge + br_netfilter + ebtables
    "kernel/net/9p/",
    "kernel/fs/9p/",
    "kernel/fs/overlayfs/",
    "kernel/drivers/virtio/",
)
MODULE_FILES = (
    "kernel/drivers/net/dummy.ko",
    "kernel/drivers/net/veth.ko",
    "kernel/drivers/net/macvlan.ko",
    "kernel/crypto/crc32c_generic.ko",
)
# The build fails loudly if one of these is missing instead of producing a VM that can't test.
REQUIRED_MODULES = (
    "ip_vs",
    *(f"ip_vs_{s}" for s in ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")),
    "ip_set",
    "ip_set_hash_ip",
    "xt_set",
    "nf_tables",
    "nf_conntrack",
    "nf_nat",
    "iptable_nat",
    "iptable_filter",
    "xt_comment",
    "xt_statistic",
    "dummy",
    "veth",
    "br_netfilter",
    "9p",
    "9pnet_virtio",
    "virtio_pci",
    "overlay",
    "crc32c_generic",
)
GUEST_LIBDIR = "lib/x86_64-linux-gnu"
# Where init.sh bind-mounts the initramfs root (/run is shared into the host root in host
# mode); the fallback wrappers below run the VM's own tools from there.
HOST_MODE_ROOT = "/run/svc2rules-vm/root"
HOST_MODE_BIN = "/run/svc2rules-vm/bin"  # -> root/$FALLBACK_DIR
FALLBACK_DIR = "usr/libexec/svc2rules-vm/bin"  # last in PATH in host mode
OVERRIDE_DIR = "usr/libexec/svc2rules-vm/override"  # first in PATH in host mode (modprobe & co)
MODUTILS = ("modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod")


class VmUnavailable(Exception):
    """The VM cannot run on this machine (missing QEMU, no packages and no cache, ...)."""


class VmBuildError(Exception):
    """Building the image failed for a reason that is a bug or an unexpected Debian change."""


def default_cache_dir() -> Path:
    env = os.environ.get("SVC2RULES_VM_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "svc2rules-vm"


def _stderr_log(msg: str) -> None:
    print(f"[svc2rules-vm] {msg}", file=sys.stderr, flush=True)


def _is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------------------------
# the image


@dataclass(frozen=True)
class VmImage:
    directory: Path
    kernel: Path
    initramfs: Path
    kernel_release: str
    packages: dict[str, str]
    manifest: dict[str, object]

    @classmethod
    def load(cls, directory: Path) -> VmImage:
        manifest = json.loads((directory / "manifest.json").read_text())
        packages = manifest["packages"]
        assert isinstance(packages, dict)
        return cls(
            directory=directory,
            kernel=directory / str(manifest["kernel"]),
            initramfs=directory / "initramfs.cpio",
            kernel_release=str(manifest["kernel_release"]),
            packages={str(k): str(v) for k, v in packages.items()},
            manifest=manifest,
        )


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_image(cache: Path | None = None, *, force: bool = False, log: Log = _stderr_log) -> VmImage:
    """Return the cached image for the current Debian package versions, building it if needed.

    Raises VmUnavailable when neither the packages nor a cached image can be had.
    """
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    # The lock serialises builders (and downloads into debs/); a complete image is immutable,
    # so runners don't take it.
    with _flock(cache / "lock"):
        refreshed = False
        while True:
            try:
                packages = resolve_packages(log, cache, refreshed=refreshed)
                key = image_key(packages)
                image_dir = cache / "images" / key
                if not force and (image_dir / "manifest.json").is_file():
                    os.utime(image_dir)  # "last used", for pruning
                    return VmImage.load(image_dir)
                return _build(cache, key, packages, log)
            except VmUnavailable as exc:
                # Stale package lists name versions the mirror no longer has: refresh once
                # (as root) and resolve again.  Offline: fall back to the newest image.
                if not refreshed and _is_root() and shutil.which("apt-get"):
                    log(f"{exc}; refreshing apt's package lists")
                    _apt_update(log)
                    refreshed = True
                    continue
                cached = newest_image(cache)
                if cached is None:
                    raise VmUnavailable(f"{exc}; and no cached image in {cache}") from exc
                log(f"{exc}; using the cached image {cached.directory.name}")
                return cached


def newest_image(cache: Path) -> VmImage | None:
    images = [d for d in (cache / "images").glob("*") if (d / "manifest.json").is_file()]
    if not images:
        return None
    return VmImage.load(max(images, key=lambda d: d.stat().st_mtime))


def image_key(packages: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(json.dumps(sorted(packages.items())).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# host prerequisites: qemu and apt


def find_qemu() -> str | None:
    return shutil.which("qemu-system-x86_64")


def ensure_qemu(log: Log = _stderr_log) -> str:
    """Path of qemu-system-x86_64, installing Debian's qemu-system-x86 when root."""
    qemu = find_qemu()
    if qemu:
        return qemu
    if not _is_root() or not shutil.which("apt-get"):
        raise VmUnavailable("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 as root)")
    log("installing qemu-system-x86 (apt-get, --no-install-recommends)")
    stderr = ""
    for attempt in (1, 2):
        # empty package lists (a fresh machine), or stale ones (the mirror dropped the
        # version they name): refresh, once
        if attempt == 2 or _apt_candidate_versions(["qemu-system-x86"]).get("qemu-system-x86") is None:
            _apt_update(log)
        proc = subprocess.run(
            [*_APT_INSTALL, "qemu-system-x86"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            text=True,
            check=False,
        )
        qemu = find_qemu()
        if proc.returncode == 0 and qemu:
            return qemu
        stderr = proc.stderr.strip()[-600:]
    raise VmUnavailable(f"apt-get install qemu-system-x86 failed: {stderr}")


_APT_INSTALL = ("apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300")


def _apt_update(log: Log) -> None:
    log("apt-get update")
    subprocess.run(
        ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"],
        capture_output=True,
        check=False,
    )


def _apt_candidate_versions(names: Iterable[str]) -> dict[str, str | None]:
    names = list(names)
    proc = subprocess.run(
        ["apt-cache", "policy", *names], capture_output=True, text=True, check=False, env=_c_locale()
    )
    result: dict[str, str | None] = dict.fromkeys(names)
    current = None
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1].split(":")[0]
        elif current is not None and line.strip().startswith("Candidate:"):
            cand = line.split(":", 1)[1].strip()
            result[current] = None if cand == "(none)" else cand
    return result


def _c_locale() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}


def _apt_depends(names: Iterable[str], *, recurse: bool) -> str:
    cmd = ["apt-cache", "depends"]
    if recurse:
        cmd += ["--recurse"]
    cmd += ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces"]
    cmd += ["--no-enhances", *names]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_c_locale())
    if proc.returncode != 0:
        raise VmUnavailable(f"apt-cache depends failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _apt_fingerprint() -> str:
    """Changes whenever apt's idea of the candidate versions may have changed."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(os.environ.get("SVC2RULES_VM_KERNEL_PKG", "").encode())
    for d in ("/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list.d", "/etc/apt/preferences.d"):
        with contextlib.suppress(OSError):
            for e in sorted(os.scandir(d), key=lambda e: e.name):
                if e.is_file():
                    st = e.stat()
                    h.update(f"{e.path} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve_packages(
    log: Log = _stderr_log, cache: Path | None = None, *, refreshed: bool = False
) -> dict[str, str]:
    """name -> candidate version of every package the image is built from.

    With `cache`, the answer is remembered until apt's package lists change (asking apt
    costs ~3 s here, which every test session would otherwise pay), unless `refreshed`.
    """
    if not shutil.which("apt-cache") or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise VmUnavailable("apt-get/apt-cache/dpkg-deb not found (not a Debian-like host)")
    memo = cache / "resolved.json" if cache else None
    if memo is not None and not refreshed:
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = json.loads(memo.read_text())
            if saved["fingerprint"] == _apt_fingerprint():
                return {str(k): str(v) for k, v in saved["packages"].items()}
    packages = _resolve_packages_once()
    if memo is not None:
        memo.write_text(json.dumps({"fingerprint": _apt_fingerprint(), "packages": packages}))
    return packages


def _resolve_packages_once() -> dict[str, str]:
    kpkg = os.environ.get("SVC2RULES_VM_KERNEL_PKG")
    # One recursive call: apt-cache takes ~1 s per call here (no pkgcache.bin).
    graph = _parse_depends(_apt_depends([KERNEL_META_PACKAGE, *TOOL_PACKAGES], recurse=True))
    if not kpkg:
        kpkg = next((d for d in graph.get(KERNEL_META_PACKAGE, []) if re.match(r"linux-image-\d", d)), None)
        if not kpkg:
            raise VmUnavailable(f"cannot resolve the kernel package from {KERNEL_META_PACKAGE}")
    # Shared libraries: the Depends closure of the tools through library packages.  A superset
    # of what is needed; the DT_NEEDED closure picks the files.
    libs: set[str] = set()
    todo = list(TOOL_PACKAGES)
    while todo:
        for dep in graph.get(todo.pop(), []):
            if re.match(r"(lib|zlib)", dep) and dep not in libs:
                libs.add(dep)
                todo.append(dep)
    names = [kpkg, *TOOL_PACKAGES, *sorted(libs - {kpkg, *TOOL_PACKAGES})]
    versions = _apt_candidate_versions(names)
    missing = sorted(n for n, v in versions.items() if v is None)
    if missing:
        raise VmUnavailable(f"no installable candidate for {', '.join(missing)} (apt-get update?)")
    return {n: v for n, v in versions.items() if v is not None}


def _parse_depends(text: str) -> dict[str, list[str]]:
    """package -> its (Pre)Depends, from `apt-cache depends [--recurse]` output.

    Of an "a | b" group only the first choice is kept (for a virtual package: its first
    provider), so that e.g. iproute2's debconf alternatives don't drag in cdebconf.
    """
    graph: dict[str, list[str]] = {}
    deps: list[str] = []
    in_group = False  # inside an "a | b | c" group, after its first member
    want_provider = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line[0].isspace():
            deps = graph.setdefault(stripped, [])
            in_group = want_provider = False
            continue
        m = re.match(r"(\|?)(?:Pre)?Depends: (\S+)", stripped)
        if m:
            first = not in_group
            in_group = m.group(1) == "|"
            want_provider = False
            if first:
                if m.group(2).startswith("<"):
                    want_provider = True  # its providers follow, indented deeper
                else:
                    deps.append(m.group(2))
        elif want_provider and ":" not in stripped:
            deps.append(stripped)
            want_provider = False
        else:
            want_provider = False
    return graph


def _deb_path(debs: Path, name: str, version: str) -> Path | None:
    found = sorted(debs.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
    return found[0] if found else None


def _download(debs: Path, packages: dict[str, str], log: Log) -> dict[str, Path]:
    missing = [f"{n}={v}" for n, v in packages.items() if _deb_path(debs, n, v) is None]
    if missing:
        log(f"apt-get download: {len(missing)} packages")
        cmd = ["apt-get", "download", "-q"]
        if _is_root():
            cmd += ["-o", "APT::Sandbox::User=root"]  # the _apt user may not write to the cache
        proc = subprocess.run([*cmd, *missing], cwd=debs, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise VmUnavailable(f"apt-get download failed: {proc.stderr.strip()[-800:]}")
    paths = {}
    for n, v in packages.items():
        p = _deb_path(debs, n, v)
        if p is None:
            raise VmUnavailable(f"apt-get download did not produce {n} {v}")
        paths[n] = p
    return paths


# --------------------------------------------------------------------------------------------
# ELF helpers: just enough to read a module's .modinfo, a program's DT_NEEDED and PVH notes


def _elf_sections(data: bytes) -> dict[str, tuple[int, int, int, int]]:
    """name -> (type, offset, size, link) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise VmBuildError("not a little-endian ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        name, typ, _flags, _addr, off, size, link = struct.unpack_from(
            "<IIQQQQI", data, shoff + i * shentsize
        )
        headers.append((name, typ, off, size, link))
    strtab_off = headers[shstrndx][2]
    out = {}
    for name, typ, off, size, link in headers:
        end = data.index(b"\0", strtab_off + name)
        out[data[strtab_off + name : end].decode()] = (typ, off, size, link)
    return out


def elf_needed(data: bytes) -> list[str]:
    """DT_NEEDED entries (sonames) of an ELF64 shared object or executable."""
    sections = _elf_sections(data)
    by_index = list(sections.values())
    dyn = sections.get(".dynamic")
    if dyn is None:
        return []
    _typ, off, size, link = dyn
    str_off = by_index[link][1]
    needed = []
    for i in range(0, size, 16):
        tag, val = struct.unpack_from("<qQ", data, off + i)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            end = data.index(b"\0", str_off + val)
            needed.append(data[str_off + val : end].decode())
    return needed


def modinfo(data: bytes) -> list[tuple[str, str]]:
    """(key, value) pairs of a kernel module's .modinfo section."""
    sec = _elf_sections(data).get(".modinfo")
    if sec is None:
        return []
    _typ, off, size, _link = sec
    pairs = []
    for item in data[off : off + size].split(b"\0"):
        if b"=" in item:
            k, _, v = item.decode(errors="replace").partition("=")
            pairs.append((k, v))
    return pairs


def has_pvh_note(elf: bytes) -> bool:
    """True if the ELF has XEN_ELFNOTE_PHYS32_ENTRY, which QEMU needs to boot it directly."""
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_off, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_off, p_off + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage, if it is compressed with xz/gzip/bzip2 and PVH-bootable."""
    if bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = gzip.decompress(payload)
        elif payload.startswith(b"BZh"):
            elf = bz2.decompress(payload)
        else:
            return None  # zstd/lz4/lzo: boot the bzImage instead
    except (lzma.LZMAError, OSError, EOFError):
        return None
    if elf[:4] != b"\x7fELF" or not has_pvh_note(elf):
        return None
    return elf


# --------------------------------------------------------------------------------------------
# newc cpio writer (the kernel's initramfs format); device nodes need no root this way


@dataclass
class _Entry:
    mode: int
    data: bytes | Path = b""
    rdev: tuple[int, int] = (0, 0)


@dataclass
class CpioTree:
    entries: dict[str, _Entry] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = _Entry(stat.S_IFDIR | 0o755)

    def dir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = _Entry(stat.S_IFDIR | mode)

    def file(self, path: str, data: bytes | Path, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = _Entry(stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = _Entry(stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = _Entry(stat.S_IFCHR | mode, b"", (major, minor))

    def write(self, out: Path | None = None, *, pad_to: int = 512) -> bytes:
        """Write the archive to `out` (returns b"") or return it (out=None)."""
        chunks: list[bytes] = []
        fh = open(out, "wb") if out else None  # noqa: SIM115 - closed below
        size = 0

        def emit(b: bytes) -> None:
            nonlocal size
            size += len(b)
            if fh:
                fh.write(b)
            else:
                chunks.append(b)

        def header(ino: int, name: str, mode: int, filesize: int, rdev: tuple[int, int]) -> None:
            bname = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, 1, 0, filesize, 0, 0, rdev[0], rdev[1], len(bname), 0)
            emit(b"070701" + b"".join(b"%08X" % f for f in fields) + bname)
            emit(b"\0" * (-(110 + len(bname)) % 4))

        try:
            for ino, name in enumerate(sorted(self.entries), start=1):
                e = self.entries[name]
                data = e.data.read_bytes() if isinstance(e.data, Path) else e.data
                header(ino, name, e.mode, len(data), e.rdev)
                emit(data)
                emit(b"\0" * (-len(data) % 4))
            header(0, "TRAILER!!!", 0, 0, (0, 0))
            # pad so that another archive can be appended (the kernel unpacks concatenations)
            emit(b"\0" * (-size % pad_to))
        finally:
            if fh:
                fh.close()
        return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# kernel modules


def _decompress_module(path: Path) -> bytes:
    """Module bytes, decompressed at build time so the guest need not (and busybox can load it)."""
    raw = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".ko.zst"):
        proc = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
        return proc.stdout
    return raw


_SIG_MAGIC = b"~Module signature appended~\n"


def strip_module_signature(data: bytes) -> bytes:
    """Drop the appended signature: checking it (RSA + SHA-512) is slow under TCG, and the
    kernel only taints itself for an unsigned module unless module.sig_enforce is set."""
    if not data.endswith(_SIG_MAGIC):
        return data
    info_end = len(data) - len(_SIG_MAGIC)
    (sig_len,) = struct.unpack_from(">I", data, info_end - 4)
    return data[: info_end - 12 - sig_len]


def _module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


@dataclass
class ModuleSet:
    """Selected modules (name -> path relative to lib/modules/<release>) with their metadata."""

    paths: dict[str, str]
    depends: dict[str, list[str]]
    aliases: dict[str, list[str]]


def select_modules(moddir: Path) -> tuple[ModuleSet, dict[str, bytes]]:
    all_paths: dict[str, str] = {}
    for p in moddir.glob("kernel/**/*.ko*"):
        rel = p.relative_to(moddir).as_posix()
        all_paths[_module_name(rel)] = rel
    info_cache: dict[str, tuple[bytes, list[tuple[str, str]]]] = {}

    def info(name: str) -> tuple[bytes, list[tuple[str, str]]]:
        if name not in info_cache:
            data = _decompress_module(moddir / all_paths[name])
            info_cache[name] = (data, modinfo(data))
        return info_cache[name]

    alias_index: dict[str, list[str]] | None = None

    def resolve_soft(target: str) -> str:
        # busybox modprobe ignores softdeps, so they become hard deps here.  The classic
        # case: libcrc32c (ip_vs, nf_conntrack) has "softdep: pre: crc32c" and fails with
        # "unknown symbol" unless a crc32c implementation is loaded first.
        nonlocal alias_index
        name = target.replace("-", "_")
        if name in all_paths:
            return name
        if alias_index is None:
            alias_index = {}
            for mod in sorted(all_paths):
                if not all_paths[mod].startswith(("kernel/crypto/", "kernel/arch/", "kernel/lib/")):
                    continue
                for k, v in info(mod)[1]:
                    if k == "alias":
                        alias_index.setdefault(v, []).append(mod)
        cands = alias_index.get(target, []) + alias_index.get(f"crypto-{target}", [])
        if not cands:
            raise VmBuildError(f"softdep {target!r}: no module provides it")
        generic = [c for c in cands if "generic" in c]  # always works under TCG's CPU model
        return (generic or sorted(cands))[0]

    wanted = {
        n
        for n, rel in all_paths.items()
        if rel.startswith(MODULE_DIRS) or rel.split(".ko", 1)[0] + ".ko" in MODULE_FILES
    }
    missing = [m for m in REQUIRED_MODULES if m not in all_paths]
    if missing:
        raise VmBuildError(f"kernel lacks required modules: {', '.join(missing)}")
    depends: dict[str, list[str]] = {}
    aliases: dict[str, list[str]] = {}
    todo = sorted(wanted)
    while todo:
        name = todo.pop()
        deps: list[str] = []
        mod_aliases: list[str] = []
        for k, v in info(name)[1]:
            if k == "depends":
                deps += [d for d in v.split(",") if d]
            elif k == "softdep":
                # "pre: a b post: c"; only pre-deps matter for loading
                mode = ""
                for tok in v.split():
                    if tok.endswith(":"):
                        mode = tok[:-1]
                    elif mode == "pre":
                        deps.append(resolve_soft(tok))
            elif k == "alias":
                mod_aliases.append(v)
        deps = [d.replace("-", "_") for d in deps]
        unknown = [d for d in deps if d not in all_paths]
        if unknown:
            raise VmBuildError(f"{name} depends on unknown modules {unknown}")
        depends[name] = deps
        aliases[name] = mod_aliases
        for d in deps:
            if d not in wanted:
                wanted.add(d)
                todo.append(d)
    data = {n: strip_module_signature(info_cache[n][0]) for n in wanted}
    return ModuleSet({n: all_paths[n] for n in wanted}, depends, aliases), data


def modules_dep(mods: ModuleSet) -> str:
    """modules.dep text.  busybox modprobe loads a line's entries in *reverse* order, so each
    line lists the module's transitive dependencies with the most basic one last."""
    lines = []
    for name in sorted(mods.paths, key=lambda n: mods.paths[n]):
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str, seen: set[str] = seen, order: list[str] = order) -> None:
            for d in mods.depends[n]:
                if d not in seen:
                    seen.add(d)
                    visit(d)
                    order.append(d)

        visit(name)
        order = [d for d in order if d != name]
        deps = " ".join(_ko_path(mods.paths[d]) for d in reversed(order))
        lines.append(f"{_ko_path(mods.paths[name])}:{' ' if deps else ''}{deps}")
    return "\n".join(lines) + "\n"


def _ko_path(rel: str) -> str:
    return rel.split(".ko", 1)[0] + ".ko"


def modules_alias(mods: ModuleSet) -> str:
    return "".join(f"alias {a} {n}\n" for n in sorted(mods.aliases) for a in mods.aliases[n])


# --------------------------------------------------------------------------------------------
# the build


def _unpack_all(debs: dict[str, Path], dest: Path) -> dict[str, Path]:
    out = {name: dest / name for name in debs}

    def unpack(name: str) -> None:
        out[name].mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[name]), str(out[name])], check=True)

    # the kernel (400 MB unpacked) first, the small ones beside it
    names = sorted(debs, key=lambda n: -debs[n].stat().st_size)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(unpack, names))
    return out


def _find_program(root: Path, name: str) -> Path:
    for d in ("usr/sbin", "usr/bin", "sbin", "bin"):
        p = root / d / name
        if p.is_file() and not p.is_symlink():
            return p
    raise VmBuildError(f"{name} not found in {root.name}")


def _library_index(roots: Iterable[Path]) -> dict[str, Path]:
    """soname -> file, over the multiarch library dirs of the unpacked packages."""
    index: dict[str, Path] = {}
    for root in roots:
        for d in (root / "lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu"):
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if ".so" not in p.name:
                    continue
                if p.is_symlink() and os.readlink(p).startswith("/"):
                    continue  # would resolve into the host, not into the package
                real = p.resolve()
                if real.is_file():
                    index.setdefault(p.name, real)
    return index


def _wrapper(name: str, real: str, *, extra_env: str = "") -> str:
    # Runs the initramfs' own binary with its own ld.so and libraries, whatever the host
    # (chroot) has.  --argv0 keeps multi-call binaries (xtables-*-multi, busybox) working.
    return (
        "#!/bin/sh\n"
        f"# svc2rules-vm: the VM's own {name} (host mode fallback, see tests/vm/vmbuild.py)\n"
        f"R={HOST_MODE_ROOT}\n"
        f"{extra_env}"
        f'exec "$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/{GUEST_LIBDIR}" --argv0 {name} '
        f'"$R/{real}" "$@"\n'
    )


def _build(cache: Path, key: str, packages: dict[str, str], log: Log) -> VmImage:
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    debs_dir = cache / "debs"
    debs_dir.mkdir(exist_ok=True)
    debs = _download(debs_dir, packages, log)
    timings["download"] = time.monotonic() - t0
    for old in cache.glob("build-*"):  # scratch of a crashed build (we hold the lock)
        shutil.rmtree(old, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        t = time.monotonic()
        roots = _unpack_all(debs, scratch / "x")
        timings["unpack"] = time.monotonic() - t
        kpkg = next(n for n in packages if n.startswith("linux-image-"))
        image_tmp = scratch / "image"
        image_tmp.mkdir()
        t = time.monotonic()
        manifest = _assemble(roots, kpkg, image_tmp, log)
        timings["assemble"] = time.monotonic() - t
        manifest["packages"] = packages
        manifest["built"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["build_seconds"] = {k: round(v, 2) for k, v in timings.items()}
        manifest["build_seconds"]["total"] = round(time.monotonic() - t0, 2)  # type: ignore[index]
        (image_tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        final = cache / "images" / key
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # --force
            shutil.rmtree(final)
        image_tmp.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _prune(cache, keep=final, debs=set(debs.values()), log=log)
    log(f"built image {key} in {time.monotonic() - t0:.1f}s: {final}")
    return VmImage.load(final)


def _prune(cache: Path, *, keep: Path, debs: set[Path], log: Log) -> None:
    # A runner needs its image only for the second between resolving it and QEMU having read
    # it; an hour of disuse is a safe margin (and ensure_image() touches the one it returns).
    for d in (cache / "images").glob("*"):
        if d != keep and time.time() - d.stat().st_mtime > 3600:
            log(f"pruning old image {d.name}")
            shutil.rmtree(d, ignore_errors=True)
    for deb in (cache / "debs").glob("*.deb"):
        if deb not in debs:
            deb.unlink()


def _assemble(roots: dict[str, Path], kpkg: str, out: Path, log: Log) -> dict[str, object]:
    kroot = roots[kpkg]
    (release,) = [p.name for p in (kroot / "lib/modules").iterdir()]
    tree = CpioTree()

    # -- kernel
    vmlinuz = kroot / "boot" / f"vmlinuz-{release}"
    vmlinux = extract_vmlinux(vmlinuz.read_bytes())
    if vmlinux is not None:
        kernel_name = "vmlinux"
        (out / kernel_name).write_bytes(vmlinux)
    else:
        log("no PVH-bootable vmlinux in the bzImage; booting vmlinuz (slower under TCG)")
        kernel_name = "vmlinuz"
        shutil.copyfile(vmlinuz, out / kernel_name)

    # -- skeleton
    for d in (
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "mnt/host",
        "mnt/rw",
        "job",
        "out",
        "newroot",
        "var/tmp",
        "etc",
    ):
        tree.dir(d)
    tree.dir("tmp", 0o1777)
    tree.symlink("var/run", "../run")
    # init.sh bind-mounts the initramfs root here (the fallback wrappers run from it)
    tree.dir(HOST_MODE_ROOT)
    tree.symlink(HOST_MODE_BIN, f"root/{FALLBACK_DIR}")
    # the kernel opens /dev/console for init's stdio before anything is mounted
    tree.chardev("dev/console", 5, 1)
    tree.chardev("dev/null", 1, 3, 0o666)
    tree.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    tree.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    tree.file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n")
    tree.file("etc/hostname", b"svc2rules-vm\n")
    # The dummy module otherwise creates a dummy0 at load time, which tests don't expect.
    tree.file("etc/modprobe.d/svc2rules-vm.conf", b"options dummy numdummies=0\n")
    for name in ("protocols", "services", "ethertypes", "rpc"):
        p = roots["netbase"] / "etc" / name
        if p.is_file():
            tree.file(f"etc/{name}", p)

    # -- busybox and the tools
    busybox = _find_program(roots["busybox"], "busybox")
    tree.file("bin/busybox", busybox, 0o755)
    programs: dict[str, Path] = {}
    for pkg, names in PROGRAMS.items():
        for name in names:
            programs[name] = _find_program(roots[pkg], name)
            tree.file(f"usr/sbin/{name}", programs[name], 0o755)
    for multi, links in XTABLES_LINKS.items():
        for link in links:
            tree.symlink(f"usr/sbin/{link}", multi)
    real_tools = set(programs) | {n for links in XTABLES_LINKS.values() for n in links}
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        # real tools win over applets (PATH order alone is not enough for scripts that
        # use absolute paths)
        if applet not in real_tools and applet != "busybox":
            tree.symlink(f"bin/{applet}", "busybox")
    for mod_util in MODUTILS:
        tree.symlink(f"sbin/{mod_util}", "../bin/busybox")
    # ipvsadm-save/-restore are bash scripts; busybox ash runs them fine
    tree.file("bin/bash", b'#!/bin/busybox sh\nexec /bin/busybox sh "$@"\n', 0o755)
    xtables = roots["iptables"] / "usr/lib/x86_64-linux-gnu/xtables"
    for ext in sorted(xtables.glob("*.so")):
        tree.file(f"usr/lib/x86_64-linux-gnu/xtables/{ext.name}", ext)
    for pkg_dir in ("etc/iproute2", "usr/share/iproute2", "usr/lib/iproute2"):
        base = roots["iproute2"] / pkg_dir
        for p in sorted(base.rglob("*")) if base.is_dir() else []:
            if p.is_file():
                tree.file(f"{pkg_dir}/{p.relative_to(base)}", p)

    # -- shared libraries: the DT_NEEDED closure of everything above
    libindex = _library_index(roots.values())
    elves = [busybox, *programs.values(), *sorted(xtables.glob("*.so"))]
    elves = [p for p in elves if p.read_bytes()[:4] == b"\x7fELF"]  # ipvsadm-save is a script
    wanted: dict[str, Path] = {}
    todo = ["ld-linux-x86-64.so.2"]
    for elf in elves:
        todo += elf_needed(elf.read_bytes())
    while todo:
        soname = todo.pop()
        if soname in wanted:
            continue
        if soname not in libindex:
            raise VmBuildError(f"shared library {soname} not found in the downloaded packages")
        wanted[soname] = libindex[soname]
        todo += elf_needed(libindex[soname].read_bytes())
    for soname, path in sorted(wanted.items()):
        tree.file(f"{GUEST_LIBDIR}/{soname}", path, 0o755)
    tree.symlink("lib64/ld-linux-x86-64.so.2", f"../{GUEST_LIBDIR}/ld-linux-x86-64.so.2")

    # -- host-mode fallbacks: the VM's own tools, usable from the host's root (chroot)
    xt_env = 'XTABLES_LIBDIR="$R/usr/lib/x86_64-linux-gnu/xtables"; export XTABLES_LIBDIR\n'
    for name in sorted(real_tools):
        if name in ("ipvsadm-save", "ipvsadm-restore"):
            # shell scripts that reset PATH; make them find the VM's ipvsadm first
            text = programs[name].read_text()
            text = re.sub(r"^PATH=", f"PATH={HOST_MODE_BIN}:", text, count=1, flags=re.M)
            tree.file(f"{FALLBACK_DIR}/{name}", text.encode(), 0o755)
            continue
        real = next(
            (f"usr/sbin/{m}" for m, links in XTABLES_LINKS.items() if name in links or name == m),
            f"usr/sbin/{name}",
        )
        env = xt_env if real.startswith("usr/sbin/xtables") else ""
        tree.file(f"{FALLBACK_DIR}/{name}", _wrapper(name, real, extra_env=env).encode(), 0o755)
    tree.file(f"{FALLBACK_DIR}/busybox", _wrapper("busybox", "bin/busybox").encode(), 0o755)
    for mod_util in MODUTILS:
        tree.file(f"{OVERRIDE_DIR}/{mod_util}", _wrapper(mod_util, "bin/busybox").encode(), 0o755)

    # -- kernel modules
    moddir = kroot / "lib/modules" / release
    mods, moddata = select_modules(moddir)
    for name, rel in mods.paths.items():
        tree.file(f"lib/modules/{release}/{_ko_path(rel)}", moddata[name])
    tree.file(f"lib/modules/{release}/modules.dep", modules_dep(mods).encode())
    tree.file(f"lib/modules/{release}/modules.alias", modules_alias(mods).encode())
    for extra in ("modules.builtin", "modules.order"):
        if (moddir / extra).is_file():
            tree.file(f"lib/modules/{release}/{extra}", moddir / extra)
    tree.file("etc/svc2rules-vm/kernel-release", f"{release}\n".encode())

    # Uncompressed on purpose: under TCG the kernel unpacks a plain cpio ~0.6 s faster than
    # a gzipped one, and it is appended to per run anyway.
    tree.write(out / "initramfs.cpio")
    log(
        f"kernel {release} ({kernel_name}), {len(mods.paths)} modules, {len(wanted)} libraries, "
        f"initramfs {(out / 'initramfs.cpio').stat().st_size / 1e6:.1f} MB"
    )
    return {
        "kernel": kernel_name,
        "kernel_release": release,
        "modules": len(mods.paths),
        "libraries": sorted(wanted),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="build.sh", description="Build the svc2rules test VM image (kernel + initramfs)."
    )
    ap.add_argument("--force", action="store_true", help="rebuild even if the cached image is current")
    ap.add_argument(
        "--cache", type=Path, help="cache dir (default $SVC2RULES_VM_CACHE or ~/.cache/svc2rules-vm)"
    )
    ap.add_argument("--no-qemu", action="store_true", help="do not check for / install qemu-system-x86")
    args = ap.parse_args(argv)
    try:
        if not args.no_qemu:
            ensure_qemu()
        image = ensure_image(args.cache, force=args.force)
    except (VmUnavailable, VmBuildError) as exc:
        _stderr_log(f"error: {exc}")
        return 1
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
