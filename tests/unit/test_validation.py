"""Validation as strict as the API server's, with one precise line per problem."""

from __future__ import annotations

from typing import Any

import pytest

from svc2rules.load import RawObject
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.registry import validate_objects
from tests.conftest import endpoint, endpoint_slice, service


def problems_of(*objects: dict[str, Any]) -> list[str]:
    result = validate_objects(RawObject("in.yaml", o) for o in objects)
    return [str(d) for d in result.errors]


def test_valid_objects_have_no_problems() -> None:
    assert problems_of(service(), endpoint_slice()) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (service(name="Bad_Name"), 'in.yaml: Service ns1/Bad_Name: metadata.name: Invalid value: "Bad_Name"'),
        (service(name="1abc"), 'metadata.name: Invalid value: "1abc": a DNS-1035 label'),
        (service(namespace="NS"), 'metadata.namespace: Invalid value: "NS"'),
        (service(ports=[{"port": 0}]), "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535"),
        (service(ports=[{"port": 65536}]), "spec.ports[0].port: Invalid value: 65536"),
        (service(ports=[{"port": "80"}]), 'spec.ports[0].port: Invalid value: "80": must be an integer'),
        (
            service(ports=[{"port": 80, "protocol": "ICMP"}]),
            'spec.ports[0].protocol: Unsupported value: "ICMP"',
        ),
        (service(ports=[{"port": 80, "name": "UPPER"}]), 'spec.ports[0].name: Invalid value: "UPPER"'),
        (
            service(ports=[{"port": 80, "name": "a-very-long-port-name"}]),
            "must be no more than 15 characters",
        ),
        (service(ports=[{"port": 80, "targetPort": "a--b"}]), "must not contain consecutive hyphens"),
        (
            service(ports=[{"port": 80, "targetPort": 70000}]),
            "spec.ports[0].targetPort: Invalid value: 70000",
        ),
        (service(ports=[{"port": 80}, {"port": 81}]), "spec.ports[0].name: Required value"),
        (
            service(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
            'spec.ports[1]: Duplicate value: {"port": 80, "protocol": "TCP"}',
        ),
        (service(ports=[{"port": 80, "nodePort": 30000}]), "spec.ports[0].nodePort: Forbidden"),
        (
            service(type="NodePort", ports=[{"port": 80, "nodePort": 70000}]),
            "spec.ports[0].nodePort: Invalid value: 70000",
        ),
        (service(clusterIP="172.30.0.999"), 'spec.clusterIP: Invalid value: "172.30.0.999"'),
        # Leading zeros are read as kube-proxy reads legacy values (model/legacy.py); 256 is out of range
        # even so.
        (service(clusterIP="0256.2.3.4"), 'spec.clusterIP: Invalid value: "0256.2.3.4"'),
        (service(externalIPs=["not-an-ip"]), 'spec.externalIPs[0]: Invalid value: "not-an-ip"'),
        (service(type="Bogus"), 'spec.type: Unsupported value: "Bogus"'),
        (
            service(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/33"]),
            'spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33"',
        ),
        (service(loadBalancerSourceRanges=["10.0.0.0/8"]), "spec.loadBalancerSourceRanges: Forbidden"),
        (
            service(
                sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}
            ),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401",
        ),
        (
            service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
            "timeoutSeconds: Invalid value: 0",
        ),
        (service(sessionAffinity="Sticky"), 'spec.sessionAffinity: Unsupported value: "Sticky"'),
        (service(externalTrafficPolicy="Local"), 'spec.externalTrafficPolicy: Invalid value: "Local"'),
        (service(internalTrafficPolicy="Nearby"), 'spec.internalTrafficPolicy: Unsupported value: "Nearby"'),
        (service(type="ExternalName", clusterIP=""), "spec.externalName: Required value"),
        (service(type="NodePort", clusterIP="None"), "may not be set to 'None' for NodePort services"),
        (
            service(type="LoadBalancer", status={"loadBalancer": {"ingress": [{"ip": "1.2.3"}]}}),
            'status.loadBalancer.ingress[0].ip: Invalid value: "1.2.3"',
        ),
        (
            endpoint_slice(endpoints=[endpoint("fd00::1")]),
            'endpoints[0].addresses[0]: Invalid value: "fd00::1"',
        ),
        (
            endpoint_slice(endpoints=[endpoint("10.0.0.300")]),
            'endpoints[0].addresses[0]: Invalid value: "10.0.0.300"',
        ),
        (endpoint_slice(ports=[{"name": "p", "port": 0}]), "ports[0].port: Invalid value: 0"),
        (
            endpoint_slice(ports=[{"name": "p", "protocol": "tcp", "port": 80}]),
            "ports[0].protocol: Unsupported value",
        ),
        (
            endpoint_slice(ports=[{"name": "p", "port": 80}, {"name": "p", "port": 81}]),
            'ports[1].name: Duplicate value: "p"',
        ),
        (endpoint_slice(address_type="IPv5"), 'addressType: Unsupported value: "IPv5"'),
        (endpoint_slice(endpoints=[{"addresses": []}]), "endpoints[0].addresses: Required value"),
    ],
)
def test_invalid_field_is_reported_with_its_path_and_value(obj: dict[str, Any], expected: str) -> None:
    problems = problems_of(obj)
    assert any(expected in p for p in problems), problems


def test_every_problem_of_a_run_is_reported() -> None:
    bad_service = service(name="Bad", clusterIP="300.0.0.1", ports=[{"port": "80"}, {"port": 70000}])
    bad_slice = endpoint_slice(endpoints=[endpoint("x")])
    problems = problems_of(bad_service, bad_slice)
    joined = "\n".join(problems)
    for fragment in (
        "metadata.name",
        "spec.clusterIP",
        "spec.ports[0].port",
        "spec.ports[1].port",
        "addresses[0]",
    ):
        assert fragment in joined
    assert all("\n" not in p for p in problems)


def test_duplicate_object_is_an_error() -> None:
    problems = problems_of(service(), service(clusterIP="172.30.0.42"))
    assert problems == [
        "in.yaml: Service ns1/svc1: metadata.name: Duplicate value: object already defined in in.yaml"
    ]


def test_same_name_different_kind_is_not_a_duplicate() -> None:
    assert (
        problems_of(service(), {**endpoint_slice(), "metadata": {"name": "svc1", "namespace": "ns1"}}) == []
    )


def test_unknown_kinds_are_skipped_with_a_warning() -> None:
    result = validate_objects(
        [RawObject("x.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}})]
    )
    assert result.errors == []
    assert [str(w) for w in result.warnings] == [
        "x.yaml: ConfigMap default/p: skipped: svc2rules does not read v1 ConfigMap"
    ]


def test_missing_kind_is_an_error() -> None:
    assert problems_of({"apiVersion": "v1", "metadata": {"name": "x"}}) == [
        "in.yaml: Object default/x: kind: Required value"
    ]


def test_long_values_are_shortened_in_messages() -> None:
    problems = problems_of(service(clusterIP="9" * 500))
    assert len(problems) == 1 and len(problems[0]) < 300 and "..." in problems[0]


def test_newlines_in_values_stay_on_one_line() -> None:
    problems = problems_of(service(name="a\nb"))
    assert problems and all("\n" not in p for p in problems)


def test_defaults_are_applied_to_raw_manifests() -> None:
    result = validate_objects([RawObject("in.yaml", service(sessionAffinity="ClientIP"))])
    svc = result.objects[0][1]
    assert svc.spec.ports[0].protocol == "TCP"  # type: ignore[attr-defined]
    assert svc.affinity_timeout == 10800  # type: ignore[attr-defined]
    assert svc.namespace == "ns1"


# -- addresses as Kubernetes' Go parsers read them ------------------------------------------------

# Python's ipaddress takes everything after "%" up to "/" as an IPv6 zone: a rule comment's
# quote, a newline and a second rule included. The API server's parsers refuse any zone.
INJECTED_ZONE = 'fe80::%x" -j ACCEPT\n-A INPUT -j ACCEPT #'


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (service(clusterIP="fe80::1%eth0"), "spec.clusterIP"),
        (service(clusterIPs=["172.30.0.41", "fe80::1%eth0"]), "spec.clusterIPs[1]"),
        (service(externalIPs=["fe80::1%x -j ACCEPT"]), "spec.externalIPs[0]"),
        (
            service(type="LoadBalancer", loadBalancerSourceRanges=[INJECTED_ZONE + "/64"]),
            "spec.loadBalancerSourceRanges[0]",
        ),
        (
            service(type="LoadBalancer", loadBalancerSourceRanges=["fe80::%eth0/64"]),
            "spec.loadBalancerSourceRanges[0]",
        ),
        (
            service(type="LoadBalancer", status={"loadBalancer": {"ingress": [{"ip": "fe80::1%eth0"}]}}),
            "status.loadBalancer.ingress[0].ip",
        ),
        (
            endpoint_slice(address_type="IPv6", endpoints=[endpoint("fe80::1%eth0")]),
            "endpoints[0].addresses[0]",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "svc1", "namespace": "ns1"},
                "subsets": [{"addresses": [{"ip": "fe80::1%eth0"}], "ports": [{"port": 80}]}],
            },
            "subsets[0].addresses[0].ip",
        ),
    ],
)
def test_an_address_or_cidr_with_a_zone_is_refused_at_its_field(obj: dict[str, Any], field: str) -> None:
    problems = problems_of(obj)
    assert len(problems) == 1, problems
    assert f": {field}: Invalid value: " in problems[0]
    assert "\n" not in problems[0]


@pytest.mark.parametrize("source_range", ["10.0.0.0/255.0.0.0", "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8/8"])
def test_a_source_range_go_cannot_parse_is_refused(source_range: str) -> None:
    problems = problems_of(service(type="LoadBalancer", loadBalancerSourceRanges=[source_range]))
    assert problems == [
        f"in.yaml: Service ns1/svc1: spec.loadBalancerSourceRanges[0]: Invalid value: "
        f'"{source_range}": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'
    ]


@pytest.mark.parametrize("source_range", [" 10.0.0.0/8 ", "10.1.2.3/8", "10.0.0.0/08", "2001:db8::1/64"])
def test_source_ranges_go_accepts_stay_valid(source_range: str) -> None:
    assert problems_of(service(type="LoadBalancer", loadBalancerSourceRanges=[source_range])) == []


# -- discovery.k8s.io/v1beta1 EndpointSlices --------------------------------------------------------


def v1beta1_slice(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {**endpoint_slice(endpoints=list(endpoints)), "apiVersion": "discovery.k8s.io/v1beta1"}


def test_a_v1beta1_endpoint_slice_is_read_as_the_api_server_converts_it() -> None:
    topology = {"kubernetes.io/hostname": "node1", "topology.kubernetes.io/zone": "z1"}
    result = validate_objects(
        [
            RawObject(
                "in.yaml",
                v1beta1_slice(
                    {"addresses": ["10.180.0.1"], "topology": topology},
                    {"addresses": ["10.180.0.2"], "nodeName": "node2", "topology": topology},
                    {"addresses": ["10.180.0.3"], "zone": "ignored", "hints": {"forNodes": [{"name": "x"}]}},
                    {"addresses": ["10.180.0.4"], "hints": {"forZones": [{"name": "z1"}]}},
                ),
            )
        ]
    )
    assert result.errors == [] and result.warnings == []
    (_, slice_), *_ = result.objects
    assert isinstance(slice_, EndpointSlice)
    eps = slice_.endpoints or []
    # zone from the topology's zone label; the node from its hostname label unless nodeName is set
    assert [(ep.node_name, ep.zone) for ep in eps] == [
        ("node1", "z1"),
        ("node2", "z1"),
        (None, None),
        (None, None),
    ]
    # v1beta1 has no zone field and no node hints: unknown fields, ignored
    assert eps[2].hints is not None and eps[2].hints.for_nodes == []
    assert eps[3].hints is not None and [z.name for z in eps[3].hints.for_zones] == ["z1"]


def test_a_v1beta1_endpoint_slice_is_validated_as_v1() -> None:
    assert problems_of(v1beta1_slice({"addresses": ["10.180.0.300"]})) == [
        'in.yaml: EndpointSlice ns1/svc1-abcde: endpoints[0].addresses[0]: Invalid value: "10.180.0.300": '
        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
    ]
    assert problems_of(v1beta1_slice({"addresses": ["10.180.0.1"], "topology": {"k": 1}})) == [
        "in.yaml: EndpointSlice ns1/svc1-abcde: endpoints[0].topology.k: Invalid value: 1: must be a string",
    ]


def test_a_v1beta1_and_a_v1_slice_of_one_name_are_one_object() -> None:
    problems = problems_of(endpoint_slice(), v1beta1_slice(endpoint("10.180.0.1")))
    assert problems == [
        "in.yaml: EndpointSlice ns1/svc1-abcde: metadata.name: Duplicate value: object already defined in in.yaml"
    ]


# -- diagnostics a terminal prints as they are ---------------------------------------------------


def test_control_characters_in_names_are_escaped() -> None:
    problems = problems_of(service(name="a\x07b\x1b[2Jc\u202ed"))
    assert problems and all(not any(c in p for c in "\x07\x1b\u202e") for p in problems)
    assert "Service ns1/a\\x07b\\x1b[2Jc\\u202ed: metadata.name" in problems[0]


def test_a_huge_name_makes_a_short_line() -> None:
    problems = problems_of(service(name="n" * 10_000_000))
    assert problems and all(len(p) < 4000 for p in problems)
    assert "(10000004 characters)" in problems[0]  # how long the object's name was


def test_equal_endpoint_conditions_are_one_frozen_instance_and_still_strictly_checked() -> None:
    eps = [endpoint(f"10.180.0.{i}", ready=True, serving=True, terminating=False) for i in range(1, 4)]
    (_, slice_), *_ = validate_objects([RawObject("in.yaml", endpoint_slice(endpoints=eps))]).objects
    assert isinstance(slice_, EndpointSlice) and slice_.endpoints is not None
    first, *others = (ep.conditions for ep in slice_.endpoints)
    assert all(other is first for other in others)
    # a lax read of "true" (to report other problems) shares nothing with a strict read
    bad = endpoint_slice(endpoints=[{"addresses": ["10.180.0.1"], "conditions": {"ready": "true"}}])
    assert problems_of(bad) == [
        'in.yaml: EndpointSlice ns1/svc1-abcde: endpoints[0].conditions.ready: Invalid value: "true": '
        "must be a boolean"
    ]
