"""`svc2rules apply` on synthetic clusters: initial load, no-op re-apply, one-Service change.

For each size and backend, in a fresh network namespace with its own state directory:

* initial   - `apply` of S Services x E endpoints onto an empty host (whole command, and the
              kernel write alone);
* no-op     - the same input again (must write nothing);
* full check - the same input with `--sync-period 0`: the periodic full check (drift repair,
              once per sync period, default 1h) reads our objects back and reloads them;
* one-svc   - one Service's endpoint changed, then changed back, `--repeat` times (the whole
              command, reading the S-Service input included, and the kernel write alone: the
              loader process's wall time). The median run is reported; the range goes to --json.

"command" is the wall time of the whole `svc2rules apply` process and "cpu" its user+sys CPU
time, children (iptables-restore, nft) included, from wait4(2). On a shared machine the wall
time depends on the load; the CPU time much less so, which is why both are printed.

Targets (issue 5, 10k x 10): initial <= 15 s (iptables) / <= 3 s (nftables); one-Service
kernel write <= 0.5 s (iptables) / <= 50 ms (nftables); whole one-Service command <= 2 s.

    sudo .venv/bin/python bench/apply_bench.py -S 1000 10000 30000 [--backend iptables nftables]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import synth

CLI = str(Path(sys.executable).with_name("svc2rules"))
NODE = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
_TIMINGS = re.compile(r"(\w+)=([0-9.]+)s")


def one_service_changed(text: str) -> str:
    """svc-00000's first endpoint moves to a fresh pod IP (a typical rollout step)."""
    first = synth.pod_ip(0, 0, 10)
    return text.replace(f'"{first}"', '"10.255.255.254"', 1)


def run_apply(netns: str, backend: str, manifest: Path, state: Path, *extra: str) -> dict[str, Any]:
    argv = [
        "ip",
        "netns",
        "exec",
        netns,
        CLI,
        "apply",
        "--backend",
        backend,
        "--state-dir",
        str(state),
        "-f",
        str(manifest),
        "--timings",
        *NODE,
        *extra,
    ]
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 reports the process's CPU time including the children it waited for (the
        # kernel loaders): `ip netns exec` execs svc2rules, so this is the whole command.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"apply failed ({proc.returncode}): {stderr}")
    timing_line = next((ln for ln in stderr.splitlines() if ln.startswith("timings:")), "")
    timings = {k: round(float(v), 3) for k, v in _TIMINGS.findall(timing_line)}
    summary = stderr.strip().splitlines()[-1]
    return {
        "wall": round(wall, 3),
        "cpu": round(usage.ru_utime + usage.ru_stime, 3),
        **timings,
        "summary": summary,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: float(r["wall"]))
    middle = dict(ordered[len(ordered) // 2])
    middle["wall_range"] = [ordered[0]["wall"], ordered[-1]["wall"]]
    middle["cpu_range"] = [min(r["cpu"] for r in runs), max(r["cpu"] for r in runs)]
    middle["load_range"] = [min(r.get("load", 0) for r in runs), max(r.get("load", 0) for r in runs)]
    middle["cpu_median"] = statistics.median(float(r["cpu"]) for r in runs)
    return middle


def bench(services: int, endpoints: int, backend: str, folder: Path, repeat: int) -> dict[str, Any]:
    base = synth.as_json(services, endpoints)
    changed = one_service_changed(base)
    # One manifest file whose content changes, as on a node (a folder of manifests, or
    # `kubectl get ... > cluster.json`): file names are part of the input (diagnostics name
    # them), so applying a differently named file is a change to every Service.
    manifest = folder / f"cluster-{services}.json"
    netns = f"s2r-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    state = folder / f"state-{backend}-{services}"
    changes: list[dict[str, Any]] = []

    def apply(text: str) -> dict[str, Any]:
        manifest.write_text(text)
        return run_apply(netns, backend, manifest, state)

    try:
        initial = apply(base)
        noop = apply(base)
        full_check = run_apply(netns, backend, manifest, state, "--sync-period", "0")
        for _ in range(repeat):
            changes.append(apply(changed))
            changes.append(apply(base))
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    state_size = sum(p.stat().st_size for p in state.iterdir() if p.is_file() and p.name != "lock")
    return {
        "backend": backend,
        "services": services,
        "endpoints": endpoints,
        "initial": initial,
        "noop": noop,
        "full_check": full_check,
        "one_service": _median_run(changes),
        "one_service_runs": changes,
        "state_mib": round(state_size / 2**20, 1),
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--backend", nargs="+", default=["iptables", "nftables"])
    parser.add_argument(
        "--repeat", type=int, default=3, help="one-Service changes (and back) per size; median shown"
    )
    parser.add_argument("--json", type=Path, help="also append one JSON line per run here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(
        "| backend | S x E | initial: command (cpu) / kernel write | no-op: command (cpu) "
        "| full check: command (cpu) / read back / kernel write "
        "| one Service: command (cpu) / kernel write | state + cache | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="svc2rules-apply-bench-") as tmp:
        for services in args.services:
            for backend in args.backend:
                r = bench(services, args.endpoints, backend, Path(tmp), args.repeat)
                i, n, f, c = r["initial"], r["noop"], r["full_check"], r["one_service"]
                print(
                    f"| {backend} | {services}x{args.endpoints} "
                    f"| {i['wall']:.2f} s ({i['cpu']:.2f}) / {i.get('load', 0):.2f} s "
                    f"| {n['wall']:.2f} s ({n['cpu']:.2f}) "
                    f"| {f['wall']:.2f} s ({f['cpu']:.2f}) / {f.get('check', 0):.2f} s / {f.get('load', 0):.2f} s "
                    f"| {c['wall']:.2f} s ({c['cpu']:.2f}) / {c.get('load', 0) * 1000:.0f} ms "
                    f"| {r['state_mib']} MiB | {r['load_average'][0]:.1f} |",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
