"""Synthetic cluster generator shared by every benchmark.

S Services x E endpoints: Service i has ClusterIP 172.16.0.0/12 + i + 1, port 80 (TCP),
one EndpointSlice whose endpoint j is pod 10.128.0.0/10 + i*E + j + 1 on port 8080,
spread over three nodes (node1 is "this" node). Every pod IP is unique, so a node can
route the whole 10.128.0.0/10 block to a server namespace that answers on every address.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Iterator
from typing import Any

import yaml

SERVICE_BASE = int(ipaddress.IPv4Address("172.16.0.0"))
POD_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
SERVICE_PORT = 80
TARGET_PORT = 8080
NODES = ("node1", "node2", "node3")


def cluster_ip(i: int) -> str:
    return str(ipaddress.IPv4Address(SERVICE_BASE + i + 1))


def pod_ip(i: int, j: int, endpoints: int) -> str:
    return str(ipaddress.IPv4Address(POD_BASE + i * endpoints + j + 1))


def objects(services: int, endpoints: int) -> Iterator[dict[str, Any]]:
    for i in range(services):
        name = f"svc-{i:05d}"
        namespace = f"ns-{i % 50:02d}"
        yield {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": cluster_ip(i),
                "clusterIPs": [cluster_ip(i)],
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "protocol": "TCP", "targetPort": TARGET_PORT}
                ],
                "selector": {"app": name},
            },
        }
        yield {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-abcde",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [pod_ip(i, j, endpoints)],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": NODES[j % len(NODES)],
                }
                for j in range(endpoints)
            ],
        }


def as_json(services: int, endpoints: int) -> str:
    """`kubectl get svc,endpointslices -A -o json` shape: one List."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects(services, endpoints))})


def as_yaml(services: int, endpoints: int) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(objects(services, endpoints), Dumper=dumper, sort_keys=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-S", "--services", type=int, default=1000)
    parser.add_argument("-E", "--endpoints", type=int, default=10)
    parser.add_argument("--format", choices=("json", "yaml"), default="json")
    args = parser.parse_args()
    text = (
        as_json(args.services, args.endpoints)
        if args.format == "json"
        else as_yaml(args.services, args.endpoints)
    )
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
