"""Build objects and compile them with the ipvs backend in-process."""

from __future__ import annotations

import json
from typing import Any

from svc2rules.api import build_plan, render
from svc2rules.backends.ipvs.build import build_ruleset
from svc2rules.backends.ipvs.model import IpvsRuleset
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.ir import Plan
from svc2rules.load import Source
from svc2rules.syntax.ipvsadm import VirtualServer
from tests.options import render_options

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def service(
    name: str,
    cluster_ip: str,
    *,
    port: int = 80,
    target: int = 8080,
    protocol: str = "TCP",
    annotations: dict[str, str] | None = None,
    node_port: int | None = None,
    status_ips: tuple[str, ...] = (),
    **spec: Any,
) -> dict[str, Any]:
    port_spec: dict[str, Any] = {"name": "p", "port": port, "targetPort": target, "protocol": protocol}
    if node_port is not None:
        port_spec["nodePort"] = node_port
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns1", "annotations": annotations or {}},
        "spec": {"clusterIP": cluster_ip, "ports": [port_spec], **spec},
    }
    if status_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in status_ips]}}
    return obj


def slice_(
    name: str, endpoints: list[tuple[str, str]], *, port: int = 8080, protocol: str = "TCP", **conditions: Any
) -> dict[str, Any]:
    """`endpoints` are (ip, nodeName); `conditions` apply to all of them."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": "ns1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "nodeName": node, **({"conditions": conditions} if conditions else {})}
            for ip, node in endpoints
        ],
        "ports": [{"name": "p", "port": port, "protocol": protocol}],
    }


def plan_of(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG) -> Plan:
    data = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode()
    return build_plan([Source("cluster.json", data)], config).plan


def ruleset(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG, **options: Any) -> IpvsRuleset:
    return build_ruleset(plan_of(objects, config), render_options("ipvs", **options), IPFamily.IPv4)


def text(objects: list[dict[str, Any]], config: ProxyConfig = CONFIG, **options: Any) -> str:
    return render(plan_of(objects, config), "ipvs", render_options("ipvs", **options)).text


def servers(
    objects: list[dict[str, Any]], config: ProxyConfig = CONFIG, **options: Any
) -> dict[str, VirtualServer]:
    """Virtual servers by `proto address:port`."""
    return {
        f"{vs.protocol} {vs.address}:{vs.port}": vs
        for vs in ruleset(objects, config, **options).virtual_servers
    }


def real(vs: VirtualServer) -> list[str]:
    return [f"{rs.endpoint} w{rs.weight}" for rs in vs.real_servers]


def entries(rules: IpvsRuleset, set_suffix: str) -> list[str]:
    """Entries of one set, without their comments."""
    (found,) = [s for s in rules.ipsets if s.name == f"SVC2R-{set_suffix}"]
    return [e.element for e in found.entries]


def chains(rules: IpvsRuleset, table: str) -> dict[str, list[str]]:
    """The companion rules of one table, chain -> specs."""
    (found,) = [t for t in rules.tables if t.name == table]
    return found.rules_by_chain()


def section(compiled: str, name: str) -> str:
    """One section of the compiled text, as the README's awk recipe cuts it."""
    out: list[str] = []
    on = False
    for line in compiled.splitlines():
        if line.startswith("#### section "):
            on = line.split()[2] == f"{name}:"
            continue
        if on and not line.startswith("#"):
            out.append(line)
    return "\n".join(out) + "\n"
