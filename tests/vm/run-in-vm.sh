#!/usr/bin/env bash
# Run a shell script as root in the svc2rules test VM (Debian's kernel under QEMU, with IPVS)
# and exit with its status.  `run-in-vm.sh --help` lists the options; docs/vm.md explains.
#   tests/vm/run-in-vm.sh my-test.sh                 # host root (read-only + tmpfs overlay)
#   tests/vm/run-in-vm.sh --initramfs my-test.sh     # minimal busybox/ipvsadm/iptables root
#   tests/vm/run-in-vm.sh --out /tmp/res -e K=V my-test.sh extra-file
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# any python3 >= 3.11 (standard library only), as a module of the checkout's tests.vm package;
# PYTHONPATH and -P (no cwd on sys.path) rather than cd, so that relative paths on the command
# line keep working
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec python3 -P -m tests.vm.harness "$@"
