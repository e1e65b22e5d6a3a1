"""`apply --backend ipvs` on synthetic clusters, inside the test VM (real IPVS, QEMU TCG).

One boot; in the guest, one python process runs the library's apply (the CLI would add
~20 s of interpreter start per call under TCG) and prints, for S Services x E endpoints:

* initial   - onto an empty host; netlink writes counted
* no-op     - the same input again through the full reconcile (reads everything back, writes nothing)
* quick     - the same input with the CLI's input digest (not recompiled when the kernel matches)
* one-svc   - one Service's first endpoint replaced (one real server added, one deleted)
* cleanup

TCG runs userland 20-50x slower than this machine, so read the figures as an upper bound.

    sudo .venv/bin/python bench/ipvs_vm_bench.py -S 100 500 -E 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import synth
from tests.vm.harness import run_in_vm

GUEST = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, __import__("os").environ["SVC2RULES_CHECKOUT"])
from svc2rules.api import build_plan
from svc2rules.apply.engine import ApplyInput, ApplyOptions, apply_plan, cleanup_host
from svc2rules.backends import RenderOptions
from svc2rules.config import ProxyConfig
from svc2rules.load import Source

config = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
for name in sys.argv[1:]:
    text = Path("/job", name).read_bytes()
    changed = Path("/job", name + ".changed").read_bytes()
    state = Path(tempfile.mkdtemp())
    out = {"case": name}
    def timed(label, fn):
        t = time.perf_counter(); result = fn(); out[label] = round(time.perf_counter() - t, 2); return result
    timed("compile", lambda: build_plan([Source(name, text)], config).plan)
    opts = ApplyOptions(state_dir=state)
    first = ApplyInput([Source(name, text)], config, "ipvs")
    r = timed("initial", lambda: apply_plan(first, opts))
    out["initial_summary"] = r.summary
    # The same objects under another name: compiled again, nothing to write.
    r = timed("noop", lambda: apply_plan(ApplyInput([Source(name + ".again", text)], config, "ipvs"), opts))
    out["noop_kind"] = r.kind
    apply_plan(first, opts)
    r = timed("quick", lambda: apply_plan(first, opts))
    out["quick_notes"] = r.notes[-1:]
    r = timed("one_svc", lambda: apply_plan(ApplyInput([Source(name, changed)], config, "ipvs"), opts))
    out["one_svc_summary"] = r.summary
    timed("cleanup", lambda: cleanup_host("ipvs", RenderOptions(), opts))
    print("RESULT " + json.dumps(out), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", type=int, nargs="+", default=[100, 500])
    parser.add_argument("-E", "--endpoints", type=int, default=3)
    args = parser.parse_args()
    files: dict[str, bytes] = {"bench.py": GUEST.encode()}
    names = []
    for services in args.services:
        name = f"s{services}x{args.endpoints}.json"
        text = synth.as_json(services, args.endpoints)
        first = synth.pod_ip(0, 0, args.endpoints)
        files[name] = text.encode()
        files[name + ".changed"] = text.replace(f'"{first}"', '"10.255.255.254"', 1).encode()
        names.append(name)
    result = run_in_vm(
        f'cd "$SVC2RULES_CHECKOUT" && "$SVC2RULES_PYTHON" /job/bench.py {" ".join(names)}',
        files=files,
        timeout=3600,
    )
    if result.rc != 0:
        print(result.describe(), file=sys.stderr)
        return 1
    print(
        f"{'case':>14} {'compile':>8} {'initial':>8} {'no-op':>7} {'quick':>7} {'one-svc':>8} {'cleanup':>8}"
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT ") :])
            print(
                f"{r['case']:>14} {r['compile']:>8} {r['initial']:>8} {r['noop']:>7} {r['quick']:>7} "
                f"{r['one_svc']:>8} {r['cleanup']:>8}   (s, under TCG)"
            )
            print(f"{'':>14} initial: {r['initial_summary']}")
            print(
                f"{'':>14} one-svc: {r['one_svc_summary']}; no-op: {r['noop_kind']}; quick: {r['quick_notes']}"
            )
    print(f"VM run {result.duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
