"""`svc2rules apply` on synthetic clusters: initial load, no-op re-apply, one-Service change.

For each size and backend, in a fresh network namespace with its own state directory:

* initial   - `apply` of S Services x E endpoints onto an empty host (whole command, and the
              kernel write alone);
* no-op     - the same input again (must write nothing);
* one-svc   - one Service's endpoint changed (the whole command, reading the S-Service input
              included, and the kernel write alone: the loader process's wall time).

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import synth

CLI = str(Path(sys.executable).with_name("svc2rules"))
NODE = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
_TIMINGS = re.compile(r"(\w+)=([0-9.]+)s")


def one_service_changed(text: str) -> str:
    """svc-00000's first endpoint moves to a fresh pod IP (a typical rollout step)."""
    first = synth.pod_ip(0, 0, 10)
    return text.replace(f'"{first}"', '"10.255.255.254"', 1)


def run_apply(netns: str, backend: str, manifest: Path, state: Path) -> dict[str, object]:
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
    ]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"apply failed ({proc.returncode}): {proc.stderr}")
    timings = {k: float(v) for k, v in _TIMINGS.findall(proc.stderr.split("timings:")[-1].splitlines()[0])}
    summary = proc.stderr.strip().splitlines()[-1]
    return {"wall": round(wall, 3), **{k: round(v, 3) for k, v in timings.items()}, "summary": summary}


def bench(services: int, endpoints: int, backend: str, folder: Path) -> dict[str, object]:
    text = synth.as_json(services, endpoints)
    base, changed = folder / f"c{services}.json", folder / f"c{services}-changed.json"
    base.write_text(text)
    changed.write_text(one_service_changed(text))
    netns = f"s2r-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    state = folder / f"state-{backend}-{services}"
    try:
        initial = run_apply(netns, backend, base, state)
        noop = run_apply(netns, backend, base, state)
        change = run_apply(netns, backend, changed, state)
        back = run_apply(netns, backend, base, state)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    state_size = sum(p.stat().st_size for p in state.glob("*.json"))
    return {
        "backend": backend,
        "services": services,
        "endpoints": endpoints,
        "initial": initial,
        "noop": noop,
        "one_service": change,
        "one_service_back": back,
        "state_mib": round(state_size / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--backend", nargs="+", default=["iptables", "nftables"])
    parser.add_argument("--json", type=Path, help="also append one JSON line per run here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(
        "| backend | S x E | initial: command / kernel write | no-op command | one Service: command / "
        "validate / kernel write | state file |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="svc2rules-apply-bench-") as tmp:
        for services in args.services:
            for backend in args.backend:
                r = bench(services, args.endpoints, backend, Path(tmp))
                i, n, c = r["initial"], r["noop"], r["one_service"]
                assert isinstance(i, dict) and isinstance(n, dict) and isinstance(c, dict)
                print(
                    f"| {backend} | {services}x{args.endpoints} | {i['wall']:.2f} s / {i.get('load', 0):.2f} s "
                    f"| {n['wall']:.2f} s | {c['wall']:.2f} s / {c.get('validate', 0) * 1000:.0f} ms / "
                    f"{c.get('load', 0) * 1000:.0f} ms | {r['state_mib']} MiB |",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
