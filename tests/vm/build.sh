#!/usr/bin/env bash
# Build (or check) the cached kernel + initramfs of the svc2rules test VM; see docs/vm.md.
#   tests/vm/build.sh            build if the Debian package versions changed, print the image dir
#   tests/vm/build.sh --force    rebuild
# Env: SVC2RULES_VM_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/svc2rules-vm),
#      SVC2RULES_VM_KERNEL_PKG (pin a linux-image-* package).
# As root it also installs qemu-system-x86 when it is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# any python3 >= 3.11 (standard library only), as a module of the checkout's tests.vm package;
# PYTHONPATH and -P (no cwd on sys.path) rather than cd, so that relative paths on the command
# line keep working
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec python3 -P -m tests.vm.vmbuild "$@"
