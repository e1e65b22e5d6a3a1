"""First-packet latency: TCP connect() time through a node to the first and the last Service.

Topology (network namespaces created here, deleted at the end):

    client 192.168.1.2 --veth-- 192.168.1.1  node  192.168.2.1 --veth-- 192.168.2.2  server
    connects to ClusterIPs        rules under test              AnyIP `local 10.128.0.0/10 dev lo`:
    (bench/synth.py cluster)      (svc2rules compile output)    every DNAT target answers on :8080

connect() returns on the SYN/ACK: one round trip in which only the SYN walks the nat rules (later
packets hit conntrack). "first" and "last" are the first and the last ClusterIP rule of the
iptables dispatch chain (the same two Services are probed for nftables). Samples alternate
between the two targets; each is closed with RST so no TIME_WAIT state piles up.

iptables is loaded with `iptables-legacy-restore` (default, `--iptables legacy`) or with
iptables-nft's `iptables-restore` (`--iptables nft`), in both cases *without* --noflush into a
fresh namespace: a --noflush load of 10k+ kube-proxy-shaped Services takes minutes on
iptables-nft 1.8.9 (see the research notes), and the dispatch cost is what is measured here.

Needs root. Prints figures; nothing is written into the repository. Example:
    sudo .venv/bin/python bench/latency_bench.py -S 1000,10000,30000 -n 200
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import synth  # noqa: E402

PREFIX = f"s2r-lat{os.getpid() % 10000}"
CLIENT, NODE, SERVER = (f"{PREFIX}-{role}" for role in ("cli", "node", "srv"))
NODE_ARGS = ["--node-name", "node1", "--node-ip", "192.168.1.1", "--cluster-cidr", "10.128.0.0/10"]

CLIENT_CODE = r"""
import json, socket, statistics, struct, sys, time
targets = json.loads(sys.argv[1]); n = int(sys.argv[2]); warm = int(sys.argv[3])
linger = struct.pack("ii", 1, 0)
samples = {name: [] for name, _, _ in targets}
failures = 0
for i in range(warm + n):
    for name, ip, port in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.settimeout(2.0)
        start = time.perf_counter_ns()
        try:
            s.connect((ip, port))
            if i >= warm:
                samples[name].append((time.perf_counter_ns() - start) / 1000.0)
        except OSError:
            failures += 1
        s.close()
out = {"failures": failures}
for name, v in samples.items():
    v.sort()
    q = lambda p: round(v[min(len(v) - 1, int(p * len(v)))], 1)
    out[name] = {"n": len(v), "p10": q(0.10), "p50": round(statistics.median(v), 1), "p90": q(0.90)} if v else None
print(json.dumps(out))
"""

SERVER_CODE = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
"""


def run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:8])}: {result.stderr.strip()[:2000]}")
    return result


def ip_batch(commands: list[str], ns: str | None = None) -> None:
    run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], "\n".join(commands) + "\n")


def setup() -> subprocess.Popen[bytes]:
    ip_batch([f"netns add {ns}" for ns in (CLIENT, NODE, SERVER)])
    ip_batch(
        [
            f"link add lc0 netns {CLIENT} type veth peer name ln0 netns {NODE}",
            f"link add ln1 netns {NODE} type veth peer name ls0 netns {SERVER}",
        ]
    )
    ip_batch(
        [
            "link set lo up",
            "link set lc0 up",
            "addr add 192.168.1.2/24 dev lc0",
            "route add default via 192.168.1.1",
        ],
        CLIENT,
    )
    ip_batch(
        [
            "link set lo up",
            "link set ln0 up",
            "link set ln1 up",
            "addr add 192.168.1.1/24 dev ln0",
            "addr add 192.168.2.1/24 dev ln1",
            "route add 10.128.0.0/10 via 192.168.2.2",
            # ClusterIPs need a route for the first packet to be forwarded after DNAT decisions.
            "route add 172.16.0.0/12 via 192.168.2.2",
        ],
        NODE,
    )
    ip_batch(
        [
            "link set lo up",
            "link set ls0 up",
            "addr add 192.168.2.2/24 dev ls0",
            "route add default via 192.168.2.1",
            "route add local 10.128.0.0/10 dev lo",
        ],
        SERVER,
    )
    run(["ip", "netns", "exec", NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    server = subprocess.Popen(
        ["ip", "netns", "exec", SERVER, sys.executable, "-c", SERVER_CODE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return server


def teardown(server: subprocess.Popen[bytes] | None) -> None:
    if server is not None:
        server.kill()
        server.wait()
    for ns in (CLIENT, NODE, SERVER):
        run(["ip", "netns", "del", ns], check=False)


def reset_node() -> None:
    run(["ip", "netns", "exec", NODE, "nft", "flush", "ruleset"], check=False)
    for table in ("nat", "filter"):
        for flag in ("-F", "-X"):
            run(["ip", "netns", "exec", NODE, "iptables-legacy", "-t", table, flag], check=False)
    run(["ip", "netns", "exec", NODE, "conntrack", "-F"], check=False)


def compile_rules(manifest: Path, backend: str) -> str:
    svc2rules = str(Path(sys.executable).with_name("svc2rules"))
    argv = [svc2rules, "compile", "--backend", backend, "-f", str(manifest), *NODE_ARGS]
    return run(argv).stdout


def first_and_last(iptables_text: str) -> tuple[str, str]:
    """The ClusterIPs of the first and last dispatch rule of the nat services chain."""
    nat = iptables_text.split("*nat", 1)[1]
    vips = re.findall(r"^-A SVC2R-SERVICES .* -d (\S+) --dport 80 -j SVC2R-SV[CL]-", nat, re.M)
    return vips[0], vips[-1]


def load(backend: str, text: str, iptables: str) -> float:
    if backend == "nftables":
        argv = ["nft", "-f", "-"]
    else:
        argv = ["iptables-legacy-restore" if iptables == "legacy" else "iptables-restore", "-w", "5"]
    start = time.perf_counter()
    run(["ip", "netns", "exec", NODE, *argv], text)
    return time.perf_counter() - start


def measure(targets: list[tuple[str, str, int]], n: int, warm: int) -> dict[str, Any]:
    result = run(
        [
            "ip",
            "netns",
            "exec",
            CLIENT,
            sys.executable,
            "-c",
            CLIENT_CODE,
            json.dumps(targets),
            str(n),
            str(warm),
        ]
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", default="1000,10000,30000")
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument(
        "-n", "--samples", type=int, default=200, help="connects per target (median of these)"
    )
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--backends", default="nftables,iptables")
    parser.add_argument("--iptables", choices=("legacy", "nft"), default="legacy")
    parser.add_argument("--json", action="store_true", help="also print one JSON object per measurement")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    server = None
    try:
        server = setup()
        reset_node()
        floor = measure([("pod", "10.128.0.2", 8080)], args.samples, args.warm)
        print(f"floor (no rules, straight to a pod IP): p50 {floor['pod']['p50']} us")
        for services in (int(s) for s in args.services.split(",") if s):
            with tempfile.TemporaryDirectory(prefix="s2r-lat-") as tmp:
                manifest = Path(tmp) / "cluster.json"
                manifest.write_text(synth.as_json(services, args.endpoints))
                texts = {b: compile_rules(manifest, b) for b in ("iptables", *args.backends.split(","))}
            first, last = first_and_last(texts["iptables"])
            for backend in args.backends.split(","):
                reset_node()
                seconds = load(backend, texts[backend], args.iptables)
                result = measure([("first", first, 80), ("last", last, 80)], args.samples, args.warm)
                a, b = result["first"], result["last"]
                label = backend if backend == "nftables" else f"iptables-{args.iptables}"
                print(
                    f"S={services:>6} {label:16} load {seconds:7.2f} s | "
                    f"first p50 {a['p50']:7.1f} us (p10 {a['p10']:.1f}) | "
                    f"last p50 {b['p50']:7.1f} us (p10 {b['p10']:.1f}) | "
                    f"last-first {b['p50'] - a['p50']:+7.1f} us | failures {result['failures']}"
                )
                if args.json:
                    print(
                        json.dumps(
                            {"services": services, "backend": label, "load_s": round(seconds, 2), **result}
                        )
                    )
    finally:
        if server is not None:
            reset_node()
        teardown(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
