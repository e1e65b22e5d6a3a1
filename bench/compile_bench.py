"""Compile benchmark: synthetic cluster -> rules, and the kernel load of the same rules.

For each size S (Services x E endpoints, bench/synth.py) it reports, in one run:
  - compile time and peak memory of `svc2rules compile --backend iptables` from JSON
    and from YAML (PyYAML's libyaml C loader when available),
  - the time `iptables-restore` takes to load that output in a private network
    namespace: flushing mode (a fresh namespace has nothing to keep) and `--noflush`
    (what runs on a real node; iptables-nft 1.8.9 is super-linear there, so it gets a
    timeout),
  - the ratio compile(JSON) / load(flushing), target <= 0.5.
Loading needs root; without it only compile figures are printed.

    make bench                      # S=10000, E=10
    .venv/bin/python bench/compile_bench.py -S 1000,10000 --noflush-timeout 120
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import synth
from bench.measure import Measured, run

NODE_FLAGS = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]


def svc2rules() -> list[str]:
    exe = Path(sys.executable).with_name("svc2rules")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "svc2rules"]


def load_in_netns(rules: Path, flags: list[str], timeout: float) -> Measured | None:
    if os.geteuid() != 0 or shutil.which("iptables-restore") is None:
        return None
    ns = f"s2r-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return run(
            ["ip", "netns", "exec", ns, "iptables-restore", "-w", *flags], stdin=rules, timeout=timeout
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def fmt(m: Measured | None, timeout: float | None = None) -> str:
    if m is None:
        return "n/a (needs root)"
    if m.returncode is None:
        return f"> {timeout:.0f} s (timeout)"
    if not m.ok:
        return f"FAILED rc={m.returncode}: {m.stderr.strip().splitlines()[-1] if m.stderr.strip() else ''}"
    return f"{m.wall:.2f} s (user {m.user:.2f}, sys {m.system:.2f}, peak {m.max_rss_mib:.0f} MiB)"


def bench(services: int, endpoints: int, workdir: Path, noflush_timeout: float, load_timeout: float) -> None:
    json_path = workdir / f"cluster-{services}.json"
    yaml_path = workdir / f"cluster-{services}.yaml"
    rules_path = workdir / f"rules-{services}.v4"
    json_path.write_text(synth.as_json(services, endpoints))
    yaml_path.write_text(synth.as_yaml(services, endpoints))
    compile_json = run([*svc2rules(), "compile", "-f", str(json_path), *NODE_FLAGS], stdout=rules_path)
    compile_yaml = run(
        [*svc2rules(), "compile", "-f", str(yaml_path), *NODE_FLAGS], stdout=workdir / "yaml.v4"
    )
    if not compile_json.ok:
        raise SystemExit(f"compile failed: {compile_json.stderr}")
    text = rules_path.read_text()
    load_flush = load_in_netns(rules_path, [], load_timeout)
    load_noflush = load_in_netns(rules_path, ["--noflush"], noflush_timeout)
    c_loader = "libyaml C loader" if getattr(yaml, "__with_libyaml__", False) else "pure-Python loader"
    print(f"== {services} Services x {endpoints} endpoints ==")
    print(
        f"  input            JSON {json_path.stat().st_size / 1e6:.1f} MB, YAML {yaml_path.stat().st_size / 1e6:.1f} MB"
    )
    print(
        f"  output           {len(text) / 1e6:.1f} MB, {text.count(chr(10))} lines, {text.count(chr(10) + ':')} chains"
    )
    print(f"  compile (JSON)   {fmt(compile_json)}")
    print(f"  compile (YAML)   {fmt(compile_yaml)}  [{c_loader}]")
    print(f"  load (flushing)  {fmt(load_flush, load_timeout)}")
    print(f"  load (--noflush) {fmt(load_noflush, noflush_timeout)}")
    if load_flush is not None and load_flush.ok:
        ratio = compile_json.wall / load_flush.wall
        verdict = "meets" if ratio <= 0.5 else "MISSES"
        print(f"  compile/load     {ratio:.2f} (target <= 0.5: {verdict})")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", default="10000", help="comma-separated Service counts")
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--noflush-timeout", type=float, default=60.0)
    parser.add_argument("--load-timeout", type=float, default=600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="svc2rules-bench-") as tmp:
        for services in (int(s) for s in args.services.split(",")):
            bench(services, args.endpoints, Path(tmp), args.noflush_timeout, args.load_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
