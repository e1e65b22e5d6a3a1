"""Fixtures for tests that need a real Debian kernel (IPVS) in a QEMU VM; see docs/vm.md.

    @pytest.mark.vm
    @pytest.mark.root
    def test_something(ipvs_vm: VmRunner, tmp_path: Path) -> None:   # VmRunner: from .harness
        res = ipvs_vm.run(script, files={"rules": data}, out_dir=tmp_path).check()

Boots cost seconds and userland runs 20-50x slower under TCG: batch many checks into one run.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import NoReturn

import pytest

from .harness import (
    VmBuildError,
    VmImage,
    VmRunner,
    VmUnavailable,
    default_checkout,
    default_python,
    ensure_image,
    ensure_qemu,
)


def vm_required() -> bool:
    """Must the VM tests run here?  In CI (CI=true) they must: a skip there would hide a
    broken harness.  SVC2RULES_VM_REQUIRED=0/1 overrides."""
    default = "1" if os.environ.get("CI", "").lower() == "true" else "0"
    return os.environ.get("SVC2RULES_VM_REQUIRED", default) == "1"


def vm_unavailable(reason: str) -> NoReturn:
    if vm_required():
        pytest.fail(
            f"the VM tests must run here (CI, or SVC2RULES_VM_REQUIRED=1), but: {reason}", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vm_image() -> VmImage:
    """The cached kernel + initramfs (built on first use: ~1 min), or a skip with the reason."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the test VM needs an x86_64 Linux host, not {platform.system()} {platform.machine()}")
    if os.geteuid() != 0:
        # qemu-system-x86 is installed as root, and --host mode shares / as this user
        pytest.skip("needs root: installs qemu-system-x86 and shares this machine's / with the VM")
    try:
        ensure_qemu()
        return ensure_image()
    except VmUnavailable as exc:
        vm_unavailable(f"cannot run the test VM: {exc}")
    except VmBuildError as exc:
        # not a missing resource: a bug, or Debian changed something the build relies on
        pytest.fail(f"building the test VM image failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def ipvs_vm(vm_image: VmImage) -> VmRunner:
    checkout = default_checkout()
    python = default_python(checkout)
    # Byte-compile the package on the host (well under a second) so that the guest, where
    # compiling runs 20-50x slower and its .pyc files vanish with the VM, need not.
    subprocess.run(
        [str(python), "-m", "compileall", "-q", str(checkout / "svc2rules")], capture_output=True, check=False
    )
    return VmRunner(image=vm_image, checkout=checkout, python=python)
