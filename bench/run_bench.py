"""`svc2rules run` on a synthetic cluster: how long one endpoint change takes to reach the kernel.

S Services x E endpoints (bench/synth.py) in F JSON List files (kubectl's `-o json` shape) in
one watched folder, in a fresh network namespace with its own state directory:

* initial     - from the start of `svc2rules run` to its first sync's log line;
* one change  - one endpoint of one Service moved to a fresh pod IP: the file is written next
                to the folder and renamed into it; the time from the rename until the kernel
                has the new element, `--min-sync-period 0`, `--repeat` times (median, min,
                max): the kernel's netlink notification of the commit (the one `nft monitor`
                prints) of a set element (nftables) or rule (iptables-nft) carrying the new
                address; nftables: `nft get element` on the hairpin set confirms the first
                one afterwards. (Polling `nft get element`, as the issue suggests, measures nft:
                it reads every set of the table first, 6.5 s at 10k Services on this machine;
                `nft monitor` does the same when it starts.)
* idle        - the agent's CPU time over `--idle` seconds with nothing changing, and its
                memory (VmRSS, VmHWM).

Targets (issue 15, 10k x 10 in 100 files): nftables <= 100 ms (aim 50 ms), iptables <= 500 ms;
idle CPU < 1%. kube-proxy's own figure for the same change is about 141 ms (nftables).

    sudo .venv/bin/python bench/run_bench.py [-S 10000] [-E 10] [--files 100] [--repeat 20]
        [--backend nftables iptables] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import synth

CLI = str(Path(sys.executable).with_name("svc2rules"))
NODE = ["--node-name", "node1", "--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"]
NEW_IP_BASE = "10.255.{}.{}"
# <linux/netlink.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>
_NETLINK_NETFILTER, _SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES = 12, 270, 1, 7
_NFT_MSG_NEWRULE, _NFT_MSG_NEWSETELEM = 6, 12
_APPLIED = re.compile(r"^applied \(incremental.*\) in (\d+) ms \((.*) ms\)$")


def write_cluster(
    folder: Path, services: int, endpoints: int, files: int, *, fresh: bool = False
) -> list[dict[str, Any]]:
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    objects = list(synth.objects(services, endpoints))
    per_file = -(-services // files) * 2  # a Service and its EndpointSlice stay together
    lists = []
    for index in range(files):
        items = objects[index * per_file : (index + 1) * per_file]
        if not items:
            break
        listing = {"apiVersion": "v1", "kind": "List", "items": items}
        (folder / f"part-{index:03d}.json").write_text(json.dumps(listing))
        lists.append(listing)
    return lists


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


class Agent:
    """`svc2rules run` in the namespace this process is in (the inner half of the bench)."""

    def __init__(self, backend: str, folder: Path, state: Path) -> None:
        argv = [CLI, "run", "--backend", backend, "-f", str(folder), "--state-dir", str(state), *NODE]
        argv += ["--min-sync-period", "0", "--healthz-bind-address", "", "--metrics-bind-address", ""]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append((time.perf_counter(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, line in self.lines:
                    if text in line:
                        return at
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"run did not say {text!r}: " + "\n".join(line for _, line in self.lines)
                    )
                self.cond.wait(1.0)

    def tail(self, count: int = 30) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines[-count:])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Monitor:
    """The kernel's own notifications of nftables changes (the netlink group `nft monitor`
    listens to, without nft's cache: `nft monitor` and `nft get element` first read the whole
    ruleset, seconds at 10k Services): when a new rule or set element carrying an address is
    committed. iptables-nft's rules are nftables rules too, so this serves both backends."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
        self.seen: dict[bytes, float] = {}
        self.wanted: set[bytes] = set()
        self.overruns: list[float] = []  # when the socket's buffer overflowed (ENOBUFS)
        self.cond = threading.Condition()
        self.stopped = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:  # ENOBUFS: a burst overflowed the buffer; what we wait for may be lost
                if not self.stopped:
                    with self.cond:
                        self.overruns.append(time.perf_counter())
                continue
            now = time.perf_counter()
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if kind & 0xFF in (_NFT_MSG_NEWRULE, _NFT_MSG_NEWSETELEM):
                    message = data[offset : offset + length]
                    with self.cond:
                        for wanted in self.wanted:
                            if wanted in message and wanted not in self.seen:
                                self.seen[wanted] = now
                                self.cond.notify_all()
                offset += (length + 3) & ~3

    def watch(self, address: str) -> None:
        with self.cond:
            self.wanted.add(socket.inet_aton(address))

    def wait(self, address: str, timeout: float) -> float | None:
        """When the kernel announced the address; None when it did not within `timeout`."""
        key = socket.inet_aton(address)
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.seen:
                if time.monotonic() > deadline:
                    return None
                self.cond.wait(0.5)
            return self.seen[key]

    def overran_since(self, moment: float) -> bool:
        with self.cond:
            return any(at >= moment for at in self.overruns)

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()


def _resync_cost(backend: str, folder: Path, state: Path) -> dict[str, float]:
    """What run's --sync-period costs: `apply --resync` of the same input and state, its steps
    but the compile (run keeps its compile in memory): reading our objects back, planning,
    validating and loading."""
    argv = [CLI, "apply", "--resync", "--timings", "--backend", backend, "-f", str(folder)]
    argv += ["--state-dir", str(state), "--skip-invalid", *NODE]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    timings = {}
    for line in proc.stderr.splitlines():
        if line.startswith("timings: "):
            for part in line.removeprefix("timings: ").split():
                name, _, value = part.partition("=")
                timings[name] = float(value.rstrip("s"))
    work = sum(seconds for name, seconds in timings.items() if name != "compile")
    return {"without_compile": round(work, 2), **{k: round(v, 2) for k, v in timings.items()}}


def _steps(lines: Iterable[str]) -> dict[str, float]:
    """The median of each step of the changes' syncs, as run logs them:
    `applied (...) in 93 ms (read 12, lock 0, check 6, ... ms)`."""
    found: dict[str, list[float]] = {}
    for line in lines:
        match = _APPLIED.search(line)
        if match is None:
            continue
        found.setdefault("sync", []).append(float(match.group(1)))
        for part in match.group(2).split(", "):
            name, _, value = part.rpartition(" ")
            found.setdefault(name, []).append(float(value))
    return {name: round(statistics.median(values), 1) for name, values in found.items()}


def _nft_has(address: str) -> bool:
    element = f"{{ {address} . {address} }}"
    proc = subprocess.run(
        ["nft", "get", "element", "ip", "svc2rules", "hairpin", element], capture_output=True, check=False
    )
    return proc.returncode == 0


def inner(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the bench namespace."""
    work = Path(args.work)
    backend = args.backend[0]
    folder, staging, state = work / "manifests", work / "staging", work / "state"
    lists = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    agent = Agent(backend, folder, state)
    first = agent.wait_for("applied (", timeout=3600)
    initial = first - agent.started
    monitor = Monitor()
    said_before = len(agent.lines)
    latencies: list[float] = []
    lost = 0
    try:
        for round_ in range(args.repeat * 2):
            if len(latencies) == args.repeat:
                break
            file_index = (round_ * 37) % len(lists)
            listing = lists[file_index]
            endpoint = listing["items"][1]["endpoints"][round_ % len(listing["items"][1]["endpoints"])]
            address = NEW_IP_BASE.format(round_ // 250, round_ % 250 + 1)
            endpoint["addresses"] = [address]
            target = folder / f"part-{file_index:03d}.json"
            tmp = staging / target.name
            tmp.write_text(json.dumps(listing))
            monitor.watch(address)
            start = time.perf_counter()
            os.rename(tmp, target)
            announced = monitor.wait(address, timeout=120)
            if announced is None:
                if monitor.overran_since(start):
                    lost += 1  # a notification burst overflowed the socket: measured again
                    continue
                raise SystemExit(f"the kernel never announced {address}; run said:\n" + agent.tail())
            latencies.append(announced - start)
            time.sleep(args.pause)
        if len(latencies) < args.repeat:
            raise SystemExit(f"{lost} of {args.repeat * 2} changes lost to socket overruns")
        time.sleep(2.0)
        cpu_before = _cpu_seconds(agent.proc.pid)
        time.sleep(args.idle)
        idle_cpu = (_cpu_seconds(agent.proc.pid) - cpu_before) / args.idle
        memory = _memory(agent.proc.pid)
        if backend == "nftables" and not _nft_has(NEW_IP_BASE.format(0, 1)):
            raise SystemExit("the kernel announced an element that nft get element does not find")
    finally:
        monitor.stop()
        agent.stop()
    steps = _steps(line for _, line in agent.lines[said_before:])
    resync = _resync_cost(backend, folder, state)
    ordered = sorted(latencies)
    return {
        "backend": backend,
        "initial_s": round(initial, 2),
        "change_ms": {
            "median": round(statistics.median(ordered) * 1000, 1),
            "min": round(ordered[0] * 1000, 1),
            "max": round(ordered[-1] * 1000, 1),
            "all": [round(x * 1000, 1) for x in latencies],
        },
        "sync_steps_ms": steps,
        "lost_to_overruns": lost,
        "idle_cpu_percent": round(idle_cpu * 100, 2),
        "resync_s": resync,
        "memory_mib": {name: round(value, 1) for name, value in memory.items()},
    }


def outer(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="svc2rules-run-bench-") as tmp:
        work = Path(tmp)
        (work / "staging").mkdir()
        write_cluster(work / "manifests", args.services, args.endpoints, args.files, fresh=True)
        size = sum(p.stat().st_size for p in (work / "manifests").iterdir()) / 1e6
        print(
            f"{args.services} Services x {args.endpoints} endpoints in {args.files} files ({size:.1f} MB)",
            flush=True,
        )
        for backend in args.backend:
            netns = f"s2r-runbench-{secrets.token_hex(3)}"
            subprocess.run(["ip", "netns", "add", netns], check=True)
            try:
                subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
                shutil.rmtree(work / "state", ignore_errors=True)
                # The same input for each backend (a run leaves its changed endpoints in it).
                write_cluster(work / "manifests", args.services, args.endpoints, args.files, fresh=True)
                argv = [sys.executable, __file__, "--inner", "--work", str(work), "--backend", backend]
                argv += ["--repeat", str(args.repeat), "--idle", str(args.idle), "--pause", str(args.pause)]
                proc = subprocess.run(
                    ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
                )
                if proc.returncode != 0:
                    print(proc.stdout + proc.stderr, file=sys.stderr)
                    return 1
                result = json.loads(proc.stdout)
            finally:
                subprocess.run(["ip", "netns", "del", netns], check=False)
            results.append(result)
            change = result["change_ms"]
            print(
                f"{backend}: initial {result['initial_s']} s; one endpoint change, rename to kernel: "
                f"median {change['median']} ms (min {change['min']}, max {change['max']}, n={args.repeat}); "
                f"steps of a change's sync (median, ms) {result['sync_steps_ms']}; "
                f"idle CPU {result['idle_cpu_percent']}%; memory {result['memory_mib']} MiB; "
                f"a --sync-period resync (apply --resync without its compile): "
                f"{result['resync_s']['without_compile']} s {result['resync_s']}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", type=int, default=10000)
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between two changes")
    parser.add_argument("--backend", nargs="+", default=["nftables", "iptables"])
    parser.add_argument("--json")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args)))
        return 0
    if os.geteuid() != 0:
        print("needs root: creates a network namespace and loads rules into the kernel", file=sys.stderr)
        return 2
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
