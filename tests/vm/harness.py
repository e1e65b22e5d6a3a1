"""Run shell scripts as root inside a throw-away QEMU VM that boots Debian's kernel.

This machine's kernel has no IPVS, so IPVS tests run here instead (see ``docs/vm.md``)::

    from tests.vm.harness import run_in_vm

    res = run_in_vm("ipvsadm -A -t 10.96.0.10:80 -s rr && ipvsadm-save -n")
    assert res.rc == 0, res.describe()
    print(res.stdout)

By default (``host_root=True``) the script runs chrooted in *this machine's* ``/``, shared
read-only over virtio-9p with a tmpfs overlay on top: the checkout (at its own path, in
``$SVC2RULES_CHECKOUT``), its venv python (``$SVC2RULES_PYTHON``), iptables-restore, nft,
ipset and ipvsadm of the host are all usable, and writes vanish with the VM.  Tools the host
lacks fall back to the VM's own copies (``$SVC2RULES_VM_TOOLS``).  With ``host_root=False``
it runs in the minimal initramfs (busybox, iproute2, ipvsadm, ipset, iptables, nft).

The VM has no network card: every packet stays on its own dummy/veth interfaces.

Standard library only (plus ``vmbuild`` beside it); ``run-in-vm.sh`` is the command line
(``python -m tests.vm.harness`` from the checkout's root).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import vmbuild
from .vmbuild import VmBuildError, VmImage, VmUnavailable, ensure_image, ensure_qemu

__all__ = [
    "DEFAULT_MODULES",
    "VmBuildError",
    "VmImage",
    "VmResult",
    "VmRunError",
    "VmRunner",
    "VmUnavailable",
    "default_checkout",
    "default_python",
    "ensure_image",
    "ensure_qemu",
    "kvm_usable",
    "run_in_vm",
]

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "init.sh"
# Loaded before the script (one modprobe call); everything else autoloads on first use
# (schedulers, genetlink IPVS family, "type dummy", nft expressions, ipset types, xt matches).
DEFAULT_MODULES: tuple[str, ...] = ("ip_vs",)
# exit codes for runs that produced no status of their own (cf. timeout(1))
RC_TIMEOUT = 124
RC_NO_STATUS = 125
RC_GUEST_ERROR = 126
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VmRunError(AssertionError):
    """Raised by VmResult.check(); an AssertionError so that pytest shows it as a failure."""


@dataclass(frozen=True)
class VmResult:
    rc: int
    """the script's exit status; 124 timeout, 125 VM died without a status, 126 guest setup failed"""
    stdout: str
    """the script's stdout and stderr, merged (stdin is /dev/null)"""
    console_tail: str
    """last lines of the guest kernel console (ttyS0): panics, oopses, module errors"""
    duration: float
    """wall-clock seconds from QEMU start to exit"""
    error: str | None = None
    """set when the harness, not the script, failed (rc 124-126)"""
    guest_times: dict[str, float] = field(default_factory=dict)
    """guest uptime at init start (t_init), script start (t_job) and script end (t_end)"""
    qemu_stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.rc == 0

    def describe(self) -> str:
        lines = [f"VM run: rc={self.rc} in {self.duration:.1f}s" + (f" ({self.error})" if self.error else "")]
        lines += ["--- script output ---", self.stdout.rstrip()]
        if self.error or self.rc != 0:
            lines += ["--- guest console (tail) ---", self.console_tail.rstrip()]
            if self.qemu_stderr.strip():
                lines += ["--- qemu stderr ---", self.qemu_stderr.rstrip()]
        return "\n".join(lines)

    def check(self, rc: int = 0) -> VmResult:
        """Return self if the script exited with `rc`, else raise VmRunError with the details."""
        if self.error is not None or self.rc != rc:
            raise VmRunError(f"expected rc={rc}\n{self.describe()}")
        return self


def default_checkout() -> Path:
    """The checkout this file belongs to (tests/vm/harness.py -> its root): the one under test."""
    return HERE.parent.parent


def default_python(checkout: Path | None = None) -> Path:
    """The python the VM should run: $SVC2RULES_VM_PYTHON, else the checkout's .venv, else ours.

    Not resolved: a venv's bin/python is a symlink, and following it would lose the venv.
    """
    env = os.environ.get("SVC2RULES_VM_PYTHON")
    if env:
        return Path(env)
    venv_python = (checkout or default_checkout()) / ".venv" / "bin" / "python"
    if venv_python.exists():
        return venv_python
    return Path(sys.executable)


def kvm_usable() -> bool:
    """KVM only with real VT-x/AMD-V.  /dev/kvm also exists on PVM hosts (kvm_pvm), which can
    only run PVM-built guest kernels: a stock Debian kernel hangs there at boot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or Path("/sys/module/kvm_pvm").exists():
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return bool(re.search(r"\b(vmx|svm)\b", flags))


def _job_archive(
    script: str,
    files: Mapping[str, bytes],
    *,
    host_root: bool,
    modules: Sequence[str],
    out: bool,
    env: Mapping[str, str],
) -> bytes:
    tree = vmbuild.CpioTree()
    # /init travels with each run, so editing init.sh never needs an image rebuild
    tree.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    tree.dir("job")
    tree.file("job/run.sh", script.encode(), 0o755)
    for name, data in files.items():
        rel = Path(name)
        if not rel.parts or rel.is_absolute() or ".." in rel.parts or rel.as_posix() == "run.sh":
            raise ValueError(f"bad file name for /job: {name!r}")
        tree.file(f"job/{rel.as_posix()}", data, 0o755 if data.startswith(b"#!") else 0o644)
    conf = {
        "VM_MODE": "host" if host_root else "initramfs",
        "VM_MODULES": " ".join(modules),
        "VM_OUT": "1" if out else "",
    }
    tree.file(
        "etc/svc2rules-vm/job.conf", "".join(f"{k}={shlex.quote(v)}\n" for k, v in conf.items()).encode()
    )
    for k, v in env.items():
        if not _ENV_NAME.match(k) or "\0" in v:
            raise ValueError(f"bad environment variable {k!r}")
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    tree.file("etc/svc2rules-vm/job.env", exports.encode())
    return tree.write()


def _qemu_command(
    qemu: str,
    image: VmImage,
    initrd: Path,
    tmp: Path,
    *,
    host_root: bool,
    out_dir: Path | None,
    mem_mb: int,
    smp: int,
    accel: str,
) -> list[str]:
    append = "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init"
    # Boot work that a throw-away test VM does not need.  Measured with -icount (guest time =
    # instructions): the crypto self-tests are half of the kernel's boot (0.9 of 1.9 s);
    # rodata=off skips re-mapping the kernel read-only and the W+X page-table walk (0.13 s).
    append += " mitigations=off cryptomgr.notests rodata=off tsc=reliable no_timer_check audit=0"
    if accel == "kvm":
        cmd = [qemu, "-accel", "kvm", "-cpu", "host"]
    else:
        # lpj= skips the delay-loop calibration (~0.2 s under TCG)
        cmd = [qemu, "-accel", "tcg", "-cpu", "max"]
        append += " lpj=10000000"
    extra_append = os.environ.get("SVC2RULES_VM_APPEND")
    if extra_append:
        append += " " + extra_append
    cmd += ["-M", "pc", "-m", str(mem_mb), "-smp", str(smp)]
    cmd += [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ]
    qboot = Path("/usr/share/qemu/qboot.rom")
    if qboot.is_file():
        cmd += ["-bios", str(qboot)]  # starts faster than SeaBIOS
    cmd += ["-kernel", str(image.kernel), "-initrd", str(initrd), "-append", append]
    cmd += ["-serial", f"file:{tmp / 'console'}"]
    cmd += ["-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out"]
    cmd += ["-chardev", f"file,id=st,path={tmp / 'status'}", "-serial", "chardev:st"]
    if host_root:
        cmd += ["-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap"]
    if out_dir is not None:
        cmd += ["-virtfs", f"local,path={out_dir},mount_tag=out,security_model=none,multidevs=remap"]
    # debugging/benchmark aid, e.g. "-icount shift=0,sleep=off" makes guest time count
    # instructions, independent of the host's load
    cmd += shlex.split(os.environ.get("SVC2RULES_VM_QEMU_ARGS", ""))
    return cmd


def run_in_vm(
    script: str,
    *,
    files: Mapping[str, bytes] | None = None,
    host_root: bool = True,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    out_dir: Path | str | None = None,
    modules: Sequence[str] | None = None,
    checkout: Path | str | None = None,
    python: Path | str | None = None,
    image: VmImage | None = None,
    mem_mb: int = 1024,
    smp: int = 1,
    accel: str | None = None,
    stream: TextIO | None = None,
    console_log: Path | str | None = None,
) -> VmResult:
    """Boot the VM, run `script` as root in it and return its exit status and output.

    script      the contents of /job/run.sh (cwd /job); /bin/sh unless it has a shebang
    files       name -> bytes, written to /job/<name> (subdirectories allowed)
    host_root   run in this machine's / (read-only + tmpfs overlay); else the initramfs
    timeout     wall-clock seconds for the whole VM; then it is killed (rc 124)
    env         extra environment variables for the script
    out_dir     host directory shared read-write at /out ($SVC2RULES_VM_OUT)
    modules     kernel modules to load first (default DEFAULT_MODULES; others autoload)
    checkout    exported as $SVC2RULES_CHECKOUT (default: the checkout of this file)
    python      exported as $SVC2RULES_PYTHON (default: default_python(checkout))
    image       a built image (default: ensure_image(), which builds it if needed)
    accel       "kvm" or "tcg" (default: $SVC2RULES_VM_ACCEL, else kvm only if kvm_usable())
    stream      also write the output there as it arrives
    console_log keep the whole guest kernel console in this file

    Raises VmUnavailable if QEMU or the image cannot be had; every failure after that is
    reported in the result (rc/error), never raised.
    """
    qemu = ensure_qemu()
    image = image or ensure_image()
    accel = accel or os.environ.get("SVC2RULES_VM_ACCEL") or ("kvm" if kvm_usable() else "tcg")
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be 'kvm' or 'tcg', not {accel!r}")
    checkout_path = Path(checkout) if checkout else default_checkout()
    full_env = {
        "SVC2RULES_CHECKOUT": str(checkout_path),
        "SVC2RULES_PYTHON": str(Path(python) if python else default_python(checkout_path)),
        **(env or {}),
    }
    out_path = Path(out_dir).resolve() if out_dir is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="svc2rules-vm-"))
    try:
        job = _job_archive(
            script,
            files or {},
            host_root=host_root,
            modules=DEFAULT_MODULES if modules is None else modules,
            out=out_path is not None,
            env=full_env,
        )
        initrd = tmp / "initrd"
        shutil.copyfile(image.initramfs, initrd)  # the kernel unpacks concatenated archives
        with open(initrd, "ab") as fh:
            fh.write(job)
        for name in ("console", "status"):
            (tmp / name).touch()
        cmd = _qemu_command(
            qemu,
            image,
            initrd,
            tmp,
            host_root=host_root,
            out_dir=out_path,
            mem_mb=mem_mb,
            smp=smp,
            accel=accel,
        )
        return _run_qemu(cmd, tmp, timeout=timeout, stream=stream, console_log=console_log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_qemu(
    cmd: list[str], tmp: Path, *, timeout: float, stream: TextIO | None, console_log: Path | str | None
) -> VmResult:
    output = bytearray()
    t0 = time.monotonic()
    with open(tmp / "qemu.stderr", "w+b") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        pipe = proc.stdout

        def pump() -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while chunk := os.read(pipe.fileno(), 65536):
                output.extend(chunk)
                if stream is not None:
                    stream.write(decoder.decode(chunk))
                    stream.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        except BaseException:  # KeyboardInterrupt: never leave a QEMU behind
            proc.kill()
            proc.wait()
            raise
        finally:
            reader.join(timeout=10)
            pipe.close()
        duration = time.monotonic() - t0
        err.seek(0)
        qemu_stderr = err.read().decode(errors="replace")

    console = (tmp / "console").read_bytes().decode(errors="replace").replace("\r", "")
    if console_log is not None:
        Path(console_log).write_text(console)
    console_tail = "\n".join(console.splitlines()[-60:])
    guest_times: dict[str, float] = {}
    rc: int | None = None
    error: str | None = None
    for line in (tmp / "status").read_bytes().decode(errors="replace").replace("\r", "").splitlines():
        key, _, value = line.partition("=")
        if key.startswith("t_"):
            with contextlib.suppress(ValueError):
                guest_times[key] = float(value)
        elif key == "rc" and value.isdigit():
            rc = int(value)
        elif key == "error":
            error = f"guest: {value}"
    if timed_out:
        rc, error = RC_TIMEOUT, f"timeout after {timeout:g}s (VM killed)"
    elif error is not None:
        rc = RC_GUEST_ERROR
    elif rc is None:
        rc, error = RC_NO_STATUS, f"VM ended without an exit status (qemu rc={proc.returncode})"
    return VmResult(
        rc=rc,
        stdout=output.decode(errors="replace"),
        console_tail=console_tail,
        duration=duration,
        error=error,
        guest_times=guest_times,
        qemu_stderr=qemu_stderr,
    )


@dataclass(frozen=True)
class VmRunner:
    """run_in_vm() bound to a built image and to the checkout under test."""

    image: VmImage
    checkout: Path
    python: Path

    def run(
        self,
        script: str,
        *,
        files: Mapping[str, bytes] | None = None,
        host_root: bool = True,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
        out_dir: Path | str | None = None,
        modules: Sequence[str] | None = None,
        mem_mb: int = 1024,
        stream: TextIO | None = None,
    ) -> VmResult:
        return run_in_vm(
            script,
            files=files,
            host_root=host_root,
            timeout=timeout,
            env=env,
            out_dir=out_dir,
            modules=modules,
            checkout=self.checkout,
            python=self.python,
            image=self.image,
            mem_mb=mem_mb,
            stream=stream,
        )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="run-in-vm.sh",
        description="Run SCRIPT as root in the svc2rules test VM (Debian kernel under QEMU) and exit "
        "with its status (124 timeout, 125 VM died, 126 guest setup failed).",
    )
    ap.add_argument("script", type=Path, help="copied to /job/run.sh; '-' reads stdin")
    ap.add_argument("files", nargs="*", type=Path, help="extra files/dirs, copied to /job/<basename>")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--host", dest="host_root", action="store_true", default=True, help="host root (default)"
    )
    mode.add_argument("--initramfs", dest="host_root", action="store_false", help="minimal initramfs root")
    ap.add_argument(
        "-e", dest="env", action="append", default=[], metavar="NAME=VALUE", help="export to SCRIPT"
    )
    ap.add_argument("--out", type=Path, help="host dir shared read-write at /out")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for the whole VM, boot included")
    ap.add_argument("--modules", help=f"modules to load first (default {' '.join(DEFAULT_MODULES)!r})")
    ap.add_argument("--mem", type=int, default=1024, help="guest MiB")
    ap.add_argument("--smp", type=int, default=1, help="guest CPUs (1 is fastest under TCG)")
    ap.add_argument("--accel", choices=("kvm", "tcg"), help="default: kvm only with real VT-x/AMD-V")
    ap.add_argument("--checkout", type=Path, help="exported as $SVC2RULES_CHECKOUT")
    ap.add_argument("--python", type=Path, help="exported as $SVC2RULES_PYTHON")
    ap.add_argument("--console", type=Path, help="keep the guest kernel console log here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print timings and the console tail")
    args = ap.parse_args(argv)

    script = sys.stdin.read() if str(args.script) == "-" else args.script.read_text()
    files: dict[str, bytes] = {}
    for f in args.files:
        if f.is_dir():
            for p in sorted(f.rglob("*")):
                if p.is_file():
                    files[(Path(f.name) / p.relative_to(f)).as_posix()] = p.read_bytes()
        else:
            files[f.name] = f.read_bytes()
    env = {}
    for kv in args.env:
        name, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"-e wants NAME=VALUE, not {kv!r}")
        env[name] = value
    try:
        res = run_in_vm(
            script,
            files=files,
            host_root=args.host_root,
            timeout=args.timeout,
            env=env,
            out_dir=args.out,
            modules=args.modules.split() if args.modules is not None else None,
            checkout=args.checkout,
            python=args.python,
            mem_mb=args.mem,
            smp=args.smp,
            accel=args.accel,
            stream=sys.stdout,
            console_log=args.console,
        )
    except (VmUnavailable, VmBuildError) as exc:
        print(f"run-in-vm: {exc}", file=sys.stderr)
        return RC_NO_STATUS
    if res.error:
        print(f"run-in-vm: {res.error}", file=sys.stderr)
    if res.error or args.verbose:
        print(f"----- guest console (tail) -----\n{res.console_tail}", file=sys.stderr)
        if res.qemu_stderr.strip():
            print(f"----- qemu stderr -----\n{res.qemu_stderr}", file=sys.stderr)
    if args.verbose:
        times = " ".join(f"{k}={v:.2f}" for k, v in sorted(res.guest_times.items()))
        print(f"run-in-vm: rc={res.rc} wall={res.duration:.2f}s guest {times}", file=sys.stderr)
    return res.rc


if __name__ == "__main__":
    sys.exit(main())
