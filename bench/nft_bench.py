"""nftables backend at scale: compile time, script size, `nft -f` load time and kernel memory.

For each S (Services x E endpoints, from bench/synth.py) this prints:
  compile     `svc2rules compile --backend nftables` from JSON, as a user runs it (wall, process)
  render      the nftables renderer alone, in-process, from an already resolved plan
  size        bytes and lines of the script
  load        `nft -f` into a fresh private network namespace (wall / user / sys / max RSS)
  reload      the same script again into that namespace (the delete-and-recreate path)
  kmem        growth of SUnreclaim + VmallocUsed + Percpu (/proc/meminfo) across the fresh load
  objects     chains and sets/maps in the script (the layout's point: independent of S)

Needs root (network namespaces). Results go to stdout only. Example:
    sudo .venv/bin/python bench/nft_bench.py -S 1000,10000,30000 -E 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import synth  # noqa: E402
from svc2rules.api import build_plan, render  # noqa: E402
from svc2rules.backends import RenderOptions  # noqa: E402
from svc2rules.backends.nftables.options import NftablesOptions  # noqa: E402
from svc2rules.config import ProxyConfig  # noqa: E402
from svc2rules.load import Source  # noqa: E402

NODE_ARGS = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))
TARGETS = {10000: 1.5, 30000: 6.0}  # issue 4: full load of S x 10 in at most this many seconds


@dataclass
class Run:
    wall: float
    user: float
    sys: float
    maxrss_mib: float


def timed(argv: list[str]) -> tuple[Run, bytes]:
    """Run a child and account its own wall time, CPU and peak RSS through wait4()."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:6])} exited {proc.returncode}: {err.read().decode()[:2000]}")
        return Run(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024), out.read()


def kmem_kib() -> int:
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0])
    return fields["SUnreclaim"] + fields["VmallocUsed"] + fields["Percpu"]


def netns(action: str, name: str) -> None:
    subprocess.run(["ip", "netns", action, name], check=True)


def load_in_fresh_netns(script: Path) -> tuple[Run, Run, int]:
    name = f"s2r-nftbench-{os.getpid()}"
    netns("add", name)
    try:
        subprocess.run(["sync"], check=False)
        before = kmem_kib()
        first, _ = timed(["ip", "netns", "exec", name, "nft", "-f", str(script)])
        time.sleep(0.5)  # let RCU-deferred frees settle before reading kernel memory
        kmem = kmem_kib() - before
        again, _ = timed(["ip", "netns", "exec", name, "nft", "-f", str(script)])
        return first, again, kmem
    finally:
        subprocess.run(["ip", "netns", "exec", name, "nft", "flush", "ruleset"], check=False)
        netns("del", name)


def fmt(run: Run) -> str:
    return f"{run.wall:6.2f} s (user {run.user:.2f}, sys {run.sys:.2f}, rss {run.maxrss_mib:.0f} MiB)"


def bench_one(
    services: int,
    endpoints: int,
    workdir: Path,
    load: bool,
    layout: str,
    repeat: int = 1,
    service_cidr: str | None = None,
) -> dict[str, object]:
    manifest = workdir / f"cluster-{services}x{endpoints}.json"
    manifest.write_text(synth.as_json(services, endpoints))
    compile_run, text_bytes = timed(
        [
            str(Path(sys.executable).with_name("svc2rules")),
            "compile",
            "--backend",
            "nftables",
            "-f",
            str(manifest),
            *NODE_ARGS,
            *(["--service-cidr", service_cidr] if service_cidr else []),
        ]
    )
    config = CONFIG.model_copy(update={"service_cidrs": (service_cidr,)}) if service_cidr else CONFIG
    plan = build_plan([Source(str(manifest), manifest.read_bytes())], config).plan
    start = time.perf_counter()
    rendered = render(plan, "nftables", RenderOptions(backend=NftablesOptions(layout)))
    render_s = time.perf_counter() - start
    if layout != "grouped":  # the CLI renders the default layout; load the one asked for
        text_bytes = rendered.text.encode()
    script = workdir / f"ruleset-{services}x{endpoints}.nft"
    script.write_bytes(text_bytes)
    text = text_bytes.decode()

    result: dict[str, object] = {
        "services": services,
        "endpoints": endpoints,
        "compile_s": round(compile_run.wall, 3),
        "compile_rss_mib": round(compile_run.maxrss_mib),
        "render_s": round(render_s, 3),
        "bytes": len(text_bytes),
        "lines": text.count("\n"),
        "chains": len(re.findall(r"^\tchain ", text, re.M)),
        "sets_maps": len(re.findall(r"^\t(?:set|map) ", text, re.M)),
    }
    guard = f", service CIDR {service_cidr}: ClusterIP guard" if service_cidr else ""
    print(f"S={services} x E={endpoints} (layout {layout}{guard})")
    print(f"  compile  {fmt(compile_run)}   render only {render_s:.2f} s")
    print(f"  size     {len(text_bytes) / 1e6:.2f} MB, {result['lines']} lines")
    print(f"  objects  {result['chains']} chains, {result['sets_maps']} sets/maps")
    if load:
        # On a shared machine a run can be starved of CPU; the best of several fresh loads is
        # the figure that reflects the ruleset (the user/sys columns show the work done).
        runs = sorted((load_in_fresh_netns(script) for _ in range(repeat)), key=lambda r: r[0].wall)
        first, again, kmem = runs[0]
        if repeat > 1:
            print(f"  loads    {', '.join(f'{r[0].wall:.2f}' for r in runs)} s (fresh, best first)")
        target = TARGETS.get(services) if endpoints == 10 and layout == "grouped" else None
        verdict = (
            ""
            if target is None
            else f"  [target <= {target} s: {'ok' if first.wall <= target else 'MISSED'}]"
        )
        print(f"  load     {fmt(first)}{verdict}")
        print(f"  reload   {fmt(again)}")
        print(f"  kmem     {kmem / 1024:.1f} MiB")
        result.update(
            load_s=round(first.wall, 3),
            load_user_s=round(first.user, 3),
            load_sys_s=round(first.sys, 3),
            load_rss_mib=round(first.maxrss_mib),
            reload_s=round(again.wall, 3),
            kmem_mib=round(kmem / 1024, 1),
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", default="1000,10000,30000", help="comma-separated Service counts")
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--no-load", action="store_true", help="compile and size only (no root needed)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object per size")
    parser.add_argument("--layout", choices=("grouped", "kube-proxy"), default="grouped")
    parser.add_argument("--repeat", type=int, default=1, help="fresh loads per size; the best is reported")
    parser.add_argument(
        "--service-cidr",
        help="give this service CIDR, for the ClusterIP guard's cost (synth's ClusterIPs: 172.16.0.0/12)",
    )
    args = parser.parse_args()
    load = not args.no_load
    if load and os.geteuid() != 0:
        parser.error("loading needs root (network namespaces); use --no-load to only compile")
    with tempfile.TemporaryDirectory(prefix="s2r-nftbench-") as tmp:
        for services in (int(s) for s in args.services.split(",") if s):
            result = bench_one(
                services, args.endpoints, Path(tmp), load, args.layout, args.repeat, args.service_cidr
            )
            if args.json:
                print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
