"""Endpoints from Pods: the same cluster given as EndpointSlices and as Pods (+ Nodes), compiled
in one run; the derivation must not more than double the compile.

S Services x E endpoints (bench/synth.py): the EndpointSlice input is synth's; the Pod input
has, instead of each slice, E Pods as `kubectl get pods -o json` prints them (metadata with uid,
owner and timestamps, a container with image, port and resources, status with conditions,
container status, podIP(s) and hostIP(s)) and the three Nodes; a third input has minimal Pods
(only what the controller reads), which tells the derivation's cost from that of reading large
objects. All compile to the same rules (checked). Reported per input: its size, `svc2rules
compile` wall and CPU time and peak RSS, and the ratios to the EndpointSlice input.

    .venv/bin/python bench/pods_bench.py                  # S=10000, E=10
    .venv/bin/python bench/pods_bench.py -S 1000,10000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import synth
from bench.compile_bench import NODE_FLAGS, fmt, svc2rules
from bench.measure import Measured, run

NODE_IPS = {"node1": "192.168.0.2", "node2": "192.168.0.3", "node3": "192.168.0.4"}


def minimal_pod(i: int, j: int, endpoints: int) -> dict[str, Any]:
    """A Pod with only what the EndpointSlice controller reads."""
    service = f"svc-{i:05d}"
    ip = synth.pod_ip(i, j, endpoints)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{service}-{j:05d}",
            "namespace": f"ns-{i % 50:02d}",
            "labels": {"app": service},
        },
        "spec": {
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": synth.TARGET_PORT}]}],
            "nodeName": synth.NODES[j % len(synth.NODES)],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "podIP": ip},
    }


def pod(i: int, j: int, endpoints: int) -> dict[str, Any]:
    """A Pod as `kubectl get pods -o json` prints it."""
    service = f"svc-{i:05d}"
    name = f"{service}-7d9f8b6c4-{j:05d}"
    node = synth.NODES[j % len(synth.NODES)]
    ip = synth.pod_ip(i, j, endpoints)
    started = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": f"ns-{i % 50:02d}",
            "uid": f"{i:08x}-{j:04x}-4000-8000-000000000000",
            "resourceVersion": str(100000 + i * endpoints + j),
            "creationTimestamp": started,
            "generateName": f"{service}-7d9f8b6c4-",
            "labels": {"app": service, "pod-template-hash": "7d9f8b6c4"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{service}-7d9f8b6c4",
                    "uid": f"{i:08x}-0000-4000-8000-000000000000",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": synth.TARGET_PORT, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "nodeName": node,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": started}
                for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "registry.example/app:1.0",
                    "imageID": "registry.example/app@sha256:" + "0" * 64,
                    "containerID": "containerd://" + f"{i:032x}{j:032x}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                }
            ],
            "hostIP": NODE_IPS[node],
            "hostIPs": [{"ip": NODE_IPS[node]}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "qosClass": "Burstable",
            "startTime": started,
        },
    }


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": NODE_IPS[name]},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod_objects(services: int, endpoints: int, *, minimal: bool = False) -> Iterator[dict[str, Any]]:
    """synth's cluster with each EndpointSlice replaced by the Pods behind it."""
    make = minimal_pod if minimal else pod
    for obj in synth.objects(services, endpoints):
        if obj["kind"] == "Service":
            yield obj
            i = int(obj["metadata"]["name"].removeprefix("svc-"))
            yield from (make(i, j, endpoints) for j in range(endpoints))
    yield from (node(name) for name in synth.NODES)


def as_list(objects: Iterator[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


def best(runs: list[Measured]) -> Measured:
    for m in runs:
        if not m.ok:
            raise SystemExit(f"compile failed: {m.stderr}")
    return min(runs, key=lambda m: m.wall)


def bench(services: int, endpoints: int, workdir: Path, repeat: int) -> None:
    inputs = {
        "EndpointSlices": as_list(synth.objects(services, endpoints)),
        "Pods + Nodes": as_list(pod_objects(services, endpoints)),
        "minimal Pods": as_list(pod_objects(services, endpoints, minimal=True)),
    }
    measured: dict[str, Measured] = {}
    outputs: dict[str, str] = {}
    for label, text in inputs.items():
        stem = label.replace(" ", "").replace("+", "-").lower()
        path = workdir / f"{stem}-{services}.json"
        path.write_text(text)
        out = workdir / f"{stem}-{services}.v4"
        measured[label] = best(
            [run([*svc2rules(), "compile", "-f", str(path), *NODE_FLAGS], stdout=out) for _ in range(repeat)]
        )
        outputs[label] = out.read_text()
    same = "identical" if len(set(outputs.values())) == 1 else "DIFFERENT"
    print(f"== {services} Services x {endpoints} endpoints (best of {repeat}) ==")
    for label, m in measured.items():
        print(f"  {label:<15} input {len(inputs[label]) / 1e6:6.1f} MB   compile {fmt(m)}")
    slices = measured["EndpointSlices"]
    for label in ("Pods + Nodes", "minimal Pods"):
        m = measured[label]
        ratio, cpu = m.wall / slices.wall, (m.user + m.system) / (slices.user + slices.system)
        verdict = "meets" if ratio <= 2 else "MISSES"
        print(
            f"  {label} / slices: wall {ratio:.2f}x (target <= 2: {verdict}), CPU {cpu:.2f}x, "
            f"peak memory {m.max_rss_mib / slices.max_rss_mib:.2f}x"
        )
    print(f"  rules           {same}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-S", "--services", default="10000", help="comma-separated Service counts")
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="runs per input; the fastest is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="svc2rules-pods-bench-") as tmp:
        for services in (int(s) for s in args.services.split(",")):
            bench(services, args.endpoints, Path(tmp), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
