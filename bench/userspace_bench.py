"""Userspace proxy vs iptables DNAT: connect latency, short-connection rate, one-stream throughput.

Three throw-away network namespaces per mode: client ── node ── server (veth pairs). The
node holds the rules under test; the client talks to a ClusterIP (172.30.0.10) whose one
endpoint is the server (10.180.0.1). Modes:

  direct     the client connects to the endpoint itself (no Service, no NAT): the floor
  iptables   `svc2rules compile --backend iptables` loaded in the node (kernel DNAT + SNAT)
  userspace  `svc2rules compile --backend userspace` loaded in the node, `svc2rules proxy` running there

Per mode (each figure the median of --repeat runs):
  connect    median / p90 of `connect()` returning, over --connects sequential connections (ms)
  first byte median / p90 from starting `connect()` to the endpoint's first byte (ms): for the
             userspace proxy this includes its own connect to the endpoint, which `connect()`
             alone does not (the client is accepted by the proxy first)
  conn/s     short connections (connect, read one byte, close), sequential and from --parallel
             client processes at once
  MB/s       one TCP stream of --megabytes to the endpoint (decimal MB)
  udp rtt    median round trip of one datagram over one association (ms)
  proxy cpu  CPU seconds the proxy process used during the run (userspace only)

Needs root. The machine is shared and small: figures are noisy; compare within one run.
Example:
    sudo .venv/bin/python bench/userspace_bench.py --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import run  # noqa: E402

SVC2RULES = str(Path(sys.executable).with_name("svc2rules"))
CLIENT_IP, NODE_CLIENT_SIDE = "192.168.50.1", "192.168.50.2"
NODE_SERVER_SIDE, SERVER_IP = "10.180.0.254", "10.180.0.1"
VIP = "172.30.0.10"
FIRST_BYTE_PORT, SINK_PORT, ECHO_PORT = 8080, 8081, 5353
MANIFEST = f"""\
apiVersion: v1
kind: Service
metadata: {{name: bench, namespace: default}}
spec:
  clusterIP: {VIP}
  ports:
  - {{name: first-byte, port: 80, targetPort: {FIRST_BYTE_PORT}}}
  - {{name: sink, port: 81, targetPort: {SINK_PORT}}}
  - {{name: echo, port: 53, protocol: UDP, targetPort: {ECHO_PORT}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: bench-a, namespace: default, labels: {{kubernetes.io/service-name: bench}}}}
addressType: IPv4
ports:
- {{name: first-byte, port: {FIRST_BYTE_PORT}}}
- {{name: sink, port: {SINK_PORT}}}
- {{name: echo, port: {ECHO_PORT}, protocol: UDP}}
endpoints:
- {{addresses: [{SERVER_IP}], nodeName: node1}}
"""
NODE_ARGS = ["--node-name", "node1", "--node-ip", NODE_CLIENT_SIDE, "--cluster-cidr", "10.0.0.0/8"]


# -- the endpoint (server role) ------------------------------------------------------------------


def serve() -> None:
    """first-byte: send one byte at once, then wait for EOF; sink: count bytes until EOF and
    report the count; echo: UDP echo."""

    def listener(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(4096)
        return s

    def first_byte(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"!")
            while conn.recv(4096):
                pass

    def sink(conn: socket.socket) -> None:
        total = 0
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(str(total).encode())

    def accept_loop(sock: socket.socket, handler: Any) -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", ECHO_PORT))
    threading.Thread(target=accept_loop, args=(listener(FIRST_BYTE_PORT), first_byte), daemon=True).start()
    threading.Thread(target=accept_loop, args=(listener(SINK_PORT), sink), daemon=True).start()
    print("serving", flush=True)
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(data, peer)


# -- the client role -------------------------------------------------------------------------------


PHASES = ("latency", "rate", "stream", "udp")


def client(phase: str, dst: str, ports: dict[str, int], args: argparse.Namespace) -> None:
    """One phase of the measurements; prints its figures as JSON."""
    out: dict[str, Any] = {}
    if phase == "latency":
        connect_ms, first_ms = [], []
        for _ in range(args.connects):
            s = socket.socket()
            t0 = time.perf_counter()
            s.connect((dst, ports["first-byte"]))
            t1 = time.perf_counter()
            if s.recv(1) != b"!":
                raise RuntimeError("bad first byte")
            t2 = time.perf_counter()
            s.close()
            connect_ms.append((t1 - t0) * 1000)
            first_ms.append((t2 - t0) * 1000)
        out["connect_ms"] = _spread(connect_ms)
        out["first_byte_ms"] = _spread(first_ms)
    elif phase == "rate":
        out.update(_rates(dst, ports["first-byte"], args.requests, args.parallel))
    elif phase == "stream":
        chunk = b"\0" * (1 << 20)
        with socket.create_connection((dst, ports["sink"])) as s:
            t0 = time.perf_counter()
            for _ in range(args.megabytes * 1_000_000 // len(chunk)):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            total = int(s.recv(64))
            out["mb_per_s"] = total / 1_000_000 / (time.perf_counter() - t0)
    else:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(1)
        udp.connect((dst, ports["echo"]))
        rtts, lost = [], 0
        for i in range(args.connects):
            t0 = time.perf_counter()
            udp.send(b"%d" % i)
            try:
                while udp.recv(64) != b"%d" % i:
                    pass  # a late answer to an earlier datagram
            except TimeoutError:
                lost += 1
                continue
            rtts.append((time.perf_counter() - t0) * 1000)
        out["udp_rtt_ms"] = _spread(rtts)
        out["udp_lost"] = lost
    print(json.dumps(out))


def _rates(dst: str, port: int, requests: int, parallel: int) -> dict[str, float]:
    def short(n: int) -> None:
        for _ in range(n):
            with socket.socket() as s:
                s.connect((dst, port))
                if s.recv(1) != b"!":
                    raise RuntimeError("bad first byte")

    t0 = time.perf_counter()
    short(requests)
    sequential = requests / (time.perf_counter() - t0)
    # Processes, not threads: one Python client must not be what limits the rate.
    each = requests // parallel
    t0 = time.perf_counter()
    children = []
    for _ in range(parallel):
        pid = os.fork()
        if pid == 0:
            try:
                short(each)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            raise RuntimeError("a client process failed")
    return {
        "conn_per_s_sequential": sequential,
        "conn_per_s_parallel": each * parallel / (time.perf_counter() - t0),
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p90": ordered[int(len(ordered) * 0.9)]}


# -- orchestration -----------------------------------------------------------------------------------


def sh(*argv: str, input_text: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@contextmanager
def topology() -> Iterator[dict[str, str]]:
    tag = f"s2rb-{os.getpid()}-{secrets.token_hex(2)}"
    ns = {role: f"{tag}-{role}" for role in ("client", "node", "server")}
    for name in ns.values():
        sh("ip", "netns", "add", name)
    try:
        batch = [
            f"link add b{tag[-4:]}cn netns {ns['client']} type veth peer name b{tag[-4:]}nc netns {ns['node']}",
            f"link add b{tag[-4:]}ns netns {ns['node']} type veth peer name b{tag[-4:]}sn netns {ns['server']}",
        ]
        sh("ip", "-batch", "-", input_text="\n".join(batch) + "\n")
        t = tag[-4:]
        sh(
            "ip",
            "-n",
            ns["client"],
            "-batch",
            "-",
            input_text=_lines(
                "link set lo up",
                f"link set b{t}cn up",
                f"addr add {CLIENT_IP}/24 dev b{t}cn",
                f"route add default via {NODE_CLIENT_SIDE}",
            ),
        )
        sh(
            "ip",
            "-n",
            ns["node"],
            "-batch",
            "-",
            input_text=_lines(
                "link set lo up",
                f"link set b{t}nc up",
                f"link set b{t}ns up",
                f"addr add {NODE_CLIENT_SIDE}/24 dev b{t}nc",
                f"addr add {NODE_SERVER_SIDE}/24 dev b{t}ns",
                # A node-local route covering the VIP, as on a real node (unused by forwarded traffic).
                f"route add 172.30.0.0/16 dev b{t}ns",
            ),
        )
        sh(
            "ip",
            "-n",
            ns["server"],
            "-batch",
            "-",
            input_text=_lines(
                "link set lo up",
                f"link set b{t}sn up",
                f"addr add {SERVER_IP}/24 dev b{t}sn",
                f"route add default via {NODE_SERVER_SIDE}",
            ),
        )
        sh("ip", "netns", "exec", ns["node"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", ns["client"], "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
        yield ns
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def compile_rules(backend: str, manifest: Path) -> str:
    return sh(SVC2RULES, "compile", "--backend", backend, "-f", str(manifest), *NODE_ARGS)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def proxy_running(node_ns: str, manifest: Path, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = workdir / "proxy.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node_ns, SVC2RULES, "proxy", "-f", str(manifest), *NODE_ARGS],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not start: {log.read_text()}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
        failures = [line for line in log.read_text().splitlines() if "failed" in line]
        if failures:
            print(f"  note: the proxy logged {len(failures)} failed connect(s), e.g. {failures[0]}")


def one_run(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    manifest = workdir / "bench.yaml"
    manifest.write_text(MANIFEST)
    with topology() as ns:
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns["server"], sys.executable, __file__, "--role", "server"],
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()  # "serving"
            if mode == "direct":
                dst = SERVER_IP
                ports = {"first-byte": FIRST_BYTE_PORT, "sink": SINK_PORT, "echo": ECHO_PORT}
            else:
                dst = VIP
                ports = {"first-byte": 80, "sink": 81, "echo": 53}
                rules = compile_rules(mode, manifest)
                sh(
                    "ip",
                    "netns",
                    "exec",
                    ns["node"],
                    "iptables-restore",
                    "-w",
                    "5",
                    "--noflush",
                    input_text=rules,
                )
            with contextlib.ExitStack() as stack:
                proxy = (
                    stack.enter_context(proxy_running(ns["node"], manifest, workdir))
                    if mode == "userspace"
                    else None
                )
                result: dict[str, Any] = {}
                for phase in PHASES:
                    client_argv = [
                        "ip", "netns", "exec", ns["client"], sys.executable, __file__, "--role", "client",
                        "--phase", phase, "--dst", dst, "--ports", json.dumps(ports),
                        "--connects", str(args.connects), "--requests", str(args.requests),
                        "--parallel", str(args.parallel), "--megabytes", str(args.megabytes),
                    ]  # fmt: skip
                    out = workdir / f"{mode}-{phase}.json"
                    cpu0 = cpu_seconds(proxy.pid) if proxy else 0.0
                    measured = run(client_argv, stdout=out)
                    if not measured.ok:
                        raise RuntimeError(f"client ({phase}) failed: {measured.stderr}")
                    result.update(json.loads(out.read_text()))
                    result[f"proxy_cpu_{phase}"] = (cpu_seconds(proxy.pid) - cpu0) if proxy else 0.0
            # The proxy's own CPU per unit of work: what it costs the node beyond the kernel's.
            result["proxy_cpu_us_per_conn"] = (
                result["proxy_cpu_rate"]
                / (args.requests + (args.requests // args.parallel) * args.parallel)
                * 1e6
                if mode == "userspace"
                else 0.0
            )
            result["proxy_cpu_s_per_gb"] = result["proxy_cpu_stream"] / (args.megabytes / 1000)
            return result
        finally:
            server.kill()
            server.wait()


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in runs:
        value: Any = r
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    rows = [
        ("connect median (ms)", ("connect_ms", "median"), "lower"),
        ("connect p90 (ms)", ("connect_ms", "p90"), "lower"),
        ("first byte median (ms)", ("first_byte_ms", "median"), "lower"),
        ("first byte p90 (ms)", ("first_byte_ms", "p90"), "lower"),
        ("conn/s sequential", ("conn_per_s_sequential",), "higher"),
        (f"conn/s {args.parallel} parallel", ("conn_per_s_parallel",), "higher"),
        ("MB/s one stream", ("mb_per_s",), "higher"),
        ("udp rtt median (ms)", ("udp_rtt_ms", "median"), "lower"),
        ("udp datagrams lost", ("udp_lost",), "lower"),
        ("proxy cpu per conn (us)", ("proxy_cpu_us_per_conn",), "lower"),
        ("proxy cpu per GB (s)", ("proxy_cpu_s_per_gb",), "lower"),
    ]
    modes = list(results)
    print(f"\n{'':26}" + "".join(f"{m:>12}" for m in modes) + f"{'userspace vs iptables':>26}")
    for label, path, better in rows:
        values = {m: median_of(results[m], *path) for m in modes}
        line = f"{label:26}" + "".join(f"{values[m]:12.3f}" for m in modes)
        if "iptables" in values and values.get("userspace") and values["iptables"] and "proxy" not in label:
            # How many times slower the userspace proxy is (below 1: faster).
            ratio = values["userspace"] / values["iptables"]
            slower = ratio if better == "lower" else 1 / ratio
            line += f"{slower:>20.2f}x slower"
        print(line)
    print(
        f"\n(median of {args.repeat} run(s); {args.connects} sequential connects, {args.requests} short "
        f"connections, {args.megabytes} MB stream; 2 shared cores: figures are noisy)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["main", "server", "client"], default="main")
    parser.add_argument("--phase", choices=PHASES, default="latency")
    parser.add_argument("--dst", default=VIP)
    parser.add_argument("--ports", default="{}")
    parser.add_argument("--connects", type=int, default=300, help="sequential connects for latency (>= 200)")
    parser.add_argument("--requests", type=int, default=2000, help="short connections per rate figure")
    parser.add_argument("--parallel", type=int, default=8, help="client processes for the parallel rate")
    parser.add_argument("--megabytes", type=int, default=1000, help="size of the one-stream transfer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="direct,iptables,userspace")
    args = parser.parse_args()
    if args.role == "server":
        serve()
        return 0
    if args.role == "client":
        client(args.phase, args.dst, json.loads(args.ports), args)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="s2r-usbench-") as tmp:
        for i in range(args.repeat):
            for mode in args.modes.split(","):
                print(f"run {i + 1}/{args.repeat}: {mode}", flush=True)
                results.setdefault(mode, []).append(one_run(mode, args, Path(tmp)))
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
