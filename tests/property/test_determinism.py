"""Output depends on the objects, never on their order; a change stays local."""

from __future__ import annotations

import copy
import re
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.backends import available_backends
from svc2rules.backends.iptables.names import ChainNames, endpoint_hash, port_proto_hash
from svc2rules.config import ProxyConfig
from svc2rules.family import IPFamily
from svc2rules.ir import Protocol, ServicePort, ServicePortKey
from tests.golden.cases import GOLDEN_BACKENDS
from tests.property.helpers import compile_objects, ir_of
from tests.property.strategies import clusters

BACKENDS = [b for b in available_backends() if b in GOLDEN_BACKENDS]
NFT_OBJECT = re.compile(r"^\t(map|chain|set) (\S+) \{")
SHARED_GROUP = re.compile(r"-(pool|endpoints)-\d+$|^affinity-record-\d+$|^affinity")


@settings(max_examples=60, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_any_order_of_the_objects_gives_byte_identical_output(
    objects: list[dict[str, Any]], rnd: Any
) -> None:
    shuffled = list(objects)
    rnd.shuffle(shuffled)
    assert ir_of(shuffled) == ir_of(objects)
    for backend in BACKENDS:
        assert compile_objects(shuffled, backend) == compile_objects(objects, backend)


def _service_markers(objects: list[dict[str, Any]], svc: dict[str, Any]) -> set[str]:
    """Strings that identify lines belonging to one Service: its name and chain hashes."""
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    markers = {f"{ns}/{name}:", f"{ns}/{name} ", f'{ns}/{name}"'}
    markers.add(f"{name}.{ns}.svc")  # dns: every record of a Service is named after it
    for port in svc["spec"]["ports"]:
        key = ServicePortKey(ns, name, port["name"], Protocol(port["protocol"]))
        sp = ServicePort(key, IPFamily.IPv4, "", 0)
        markers.add(port_proto_hash(str(key), sp.protocol.keyword))
        markers.add(f"{ns}/{name}/{port['protocol'].lower()}/{port['name']}")
        for obj in objects:
            if (
                obj["kind"] == "EndpointSlice"
                and obj["metadata"]["labels"]["kubernetes.io/service-name"] == name
            ):
                for ep in obj["endpoints"]:
                    for slice_port in obj["ports"]:
                        address = f"{ep['addresses'][0]}:{slice_port['port']}"
                        markers.add(endpoint_hash(str(key), sp.protocol.keyword, address))
                        markers.add(address)
                    for ep in obj["endpoints"]:
                        # The endpoint's own address, e.g. in a hairpin pair "ip . ip,".
                        markers.update({f"{ep['addresses'][0]} ", f"{ep['addresses'][0]},"})
    # ipvs: a virtual server line names only its address, so the Service's frontends identify it.
    spec = svc["spec"]
    ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])
    vips = [spec["clusterIP"], *spec.get("externalIPs", []), *(i["ip"] for i in ingress if "ip" in i)]
    for port in spec["ports"]:
        markers.update(f"{vip}:{port['port']} " for vip in vips)
        if port.get("nodePort"):
            markers.add(f":{port['nodePort']} ")
    ChainNames()  # the prefix is fixed; hashes are what identify a service's chains
    return markers


@settings(max_examples=40, deadline=None)
@given(clusters(max_services=4), st.data())
def test_changing_one_service_changes_only_its_own_lines(
    objects: list[dict[str, Any]], data: st.DataObject
) -> None:
    services = [o for o in objects if o["kind"] == "Service"]
    target = data.draw(st.sampled_from(services))
    changed = copy.deepcopy(objects)
    changed_svc = next(o for o in changed if o["kind"] == "Service" and o["metadata"] == target["metadata"])
    mutation = data.draw(st.sampled_from(["affinity", "port", "slice"]))
    if mutation == "affinity":
        spec = changed_svc["spec"]
        if spec.get("sessionAffinity") == "ClientIP":
            spec.pop("sessionAffinity")
            spec.pop("sessionAffinityConfig")
        else:
            spec["sessionAffinity"] = "ClientIP"
    elif mutation == "port":
        changed_svc["spec"]["ports"][0]["port"] = 9999
    else:
        changed.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{target['metadata']['name']}-extra",
                    "namespace": target["metadata"]["namespace"],
                    "labels": {"kubernetes.io/service-name": target["metadata"]["name"]},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.250.0.1"], "nodeName": "node1"}],
                "ports": [
                    {"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]}
                    for p in target["spec"]["ports"]
                ],
            }
        )
    markers = (
        _service_markers(objects, target)
        | _service_markers(changed, changed_svc)
        | {"10.250.0.1", ":9999", " 9999"}
    )
    for backend in BACKENDS:
        before = compile_objects(objects, backend).splitlines()
        after = compile_objects(changed, backend).splitlines()
        shared_groups = 0
        for line in _changed_lines(before, after):
            if backend == "dns" and " IN SOA " in line:
                continue  # the zone's serial is a hash of all its records: it must change with any
            if backend == "nftables" and not line[1:].startswith("\t\t\t"):
                # The grouped layout shares one pool chain and map per endpoint count and
                # protocol (and one chain per affinity timeout): the first or last Service of
                # a group adds or removes that group's object; per-Service content is elements.
                header = NFT_OBJECT.match(line[1:])
                if header:
                    assert SHARED_GROUP.search(header.group(2)), f"a change touched {header.group(0)!r}"
                    shared_groups += 1
                continue
            assert any(m in line for m in markers), (
                f"{backend}: a change to {target['metadata']} touched {line!r}"
            )
        # However large the cluster, a Service touches at most its own groups: per frontend
        # space (service, nodeport, and their eTP-Local shortcuts) x protocol (3) x the group
        # it leaves and the one it joins, a chain and a map each (4 x 3 x 2 x 2 = 48), plus
        # affinity chains.
        assert shared_groups <= 56, f"{backend}: {shared_groups} shared objects changed"


def _changed_lines(before: list[str], after: list[str]) -> list[str]:
    """Lines removed ("-") or added ("+"), as multisets: a line that only moved is unchanged.

    A line diff would do, but its alignment drifts on the many identical structural lines
    (`}`, `elements = {`) and then reports untouched neighbours as removed and re-added.
    """
    old, new = Counter(before), Counter(after)
    return [f"-{line}" for line in (old - new).elements()] + [f"+{line}" for line in (new - old).elements()]


def test_the_config_is_part_of_the_output() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a", "namespace": "ns1"},
        "spec": {"clusterIP": "172.30.0.1", "ports": [{"port": 80}]},
    }
    other = ProxyConfig(
        node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",), masquerade_bit=13
    )
    assert compile_objects([svc]) != compile_objects([svc], config=other)
