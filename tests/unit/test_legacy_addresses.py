"""Legacy addresses (issue 14, point 6): leading-zero IPv4 addresses and CIDRs that objects stored
before the API server's strict IP validation still carry are read as kube-proxy reads them
(k8s.io/utils/net parse.go ParseIPSloppy / ParseCIDRSloppy: the zeros stripped, every part
DECIMAL) in exactly the fields kube-proxy parses sloppily, rendered canonically, with one warning
line per object; every other field and kind stays strict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from svc2rules.addresses import legacy_cidr, legacy_ip
from svc2rules.api import build_plan
from svc2rules.backends import available_backends
from svc2rules.cli import app
from svc2rules.compile import compile_sources
from svc2rules.compile.memo import MemoryMemo
from svc2rules.config import ProxyConfig
from svc2rules.load import RawObject, Source
from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.registry import validate_objects
from svc2rules.model.service import Service
from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml

CONFIG = ProxyConfig(node_name="node1", node_ips=("192.168.0.2",), cluster_cidrs=("10.0.0.0/8",))


def validated(obj: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one object, as lines."""
    result = validate_objects([RawObject("in.yaml", obj)])
    return [str(d) for d in result.errors], [str(d) for d in result.warnings]


# -- the parsers: k8s.io/utils/net parse.go ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("172.30.0.041", "172.30.0.41"),  # decimal: 41, not octal 33
        ("010.0.0.1", "10.0.0.1"),  # decimal: 10, not octal 8
        ("01.02.03.004", "1.2.3.4"),
        ("000.0.0.01", "0.0.0.1"),
        ("::ffff:010.0.0.1", "::ffff:10.0.0.1"),  # matchZeros also applies after a ":"
        ("10.0.0.1", None),  # strictly valid: not a legacy value
        ("0256.0.0.1", None),  # 256 even without its zero
        ("0x10.0.0.1", None),  # no hexadecimal
        ("010.0.0.1\n", None),  # Go's `$` is the end of the text, not before a final newline
        ("010.0.0.1.5", None),
        ("2001:db8::01", None),  # IPv6 groups may have leading zeros: strict already
    ],
)
def test_legacy_ip_reads_leading_zeros_as_decimal(text: str, expected: str | None) -> None:
    assert legacy_ip(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("010.0.0.1/24", "10.0.0.0/24"),
        ("010.0.0.0/08", "10.0.0.0/8"),
        ("192.168.001.000/24", "192.168.1.0/24"),
        ("10.0.0.0/8", None),
        ("010.0.0.0/33", None),
        ("010.0.0.0", None),  # no prefix length: not a CIDR
    ],
)
def test_legacy_cidr_reads_leading_zeros_as_decimal(text: str, expected: str | None) -> None:
    assert legacy_cidr(text) == expected


# -- each field kube-proxy reads sloppily --------------------------------------------------------

_LB = {"type": "LoadBalancer", "ports": [{"name": "p80", "port": 80, "targetPort": 8080, "nodePort": 30080}]}


@pytest.mark.parametrize(
    ("spec", "field", "read"),
    [
        # pkg/proxy/serviceport.go newBaseServiceInfo: ParseIPSloppy(clusterIP)
        ({"clusterIP": "172.30.0.041"}, "spec.clusterIP", lambda s: s.spec.cluster_ip),
        (
            # (clusterIPs[0] matches clusterIP once both are read alike)
            {"clusterIP": "172.30.0.41", "clusterIPs": ["172.30.0.041"]},
            "spec.clusterIPs[0]",
            lambda s: s.all_cluster_ips[0],
        ),
        # pkg/proxy/util MapIPsByIPFamily: ParseIPSloppy
        ({"externalIPs": ["192.168.099.1"]}, "spec.externalIPs[0]", lambda s: s.spec.external_ips[0]),
        # pkg/proxy/util MapCIDRsByIPFamily: TrimSpace, then ParseCIDRSloppy
        (
            {**_LB, "loadBalancerSourceRanges": [" 010.0.0.1/24 "]},
            "spec.loadBalancerSourceRanges[0]",
            lambda s: s.spec.load_balancer_source_ranges[0],
        ),
        # newBaseServiceInfo: ParseIPSloppy(ing.IP)
        (
            {**_LB, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.07"}]}}},
            "status.loadBalancer.ingress[0].ip",
            lambda s: s.status.load_balancer.ingress[0].ip,
        ),
    ],
)
def test_service_fields_read_as_kube_proxy_reads_them(spec: dict[str, Any], field: str, read: Any) -> None:
    obj = service(**spec)
    errors, warnings = validated(obj)
    assert errors == []
    assert len(warnings) == 1 and f"in.yaml: Service ns1/svc1: {field}" in warnings[0]
    assert "leading zeros" in warnings[0] and "decimal" in warnings[0]
    model = Service.model_validate(obj)
    assert read(model) in ("172.30.0.41", "192.168.99.1", "10.0.0.0/24", "203.0.113.7")
    assert [v.path for v in model.legacy_values] == [field]


def test_one_warning_line_per_object_naming_every_field() -> None:
    obj = service(clusterIP="172.30.0.041", clusterIPs=["172.30.0.041"], externalIPs=["192.168.099.1"])
    _, warnings = validated(obj)
    assert warnings == [
        "in.yaml: Service ns1/svc1: spec.clusterIP, spec.clusterIPs[0], spec.externalIPs[0]: legacy values "
        'with leading zeros read as kube-proxy reads them (decimal, not octal): "172.30.0.041" as '
        '172.30.0.41, "172.30.0.041" as 172.30.0.41, "192.168.099.1" as 192.168.99.1'
    ]


def test_endpointslice_addresses() -> None:
    obj = endpoint_slice(endpoints=[endpoint("10.180.0.1"), endpoint("010.180.000.002")])
    errors, warnings = validated(obj)
    assert errors == []
    assert len(warnings) == 1 and "EndpointSlice ns1/svc1-abcde: endpoints[1].addresses[0]: " in warnings[0]
    model = EndpointSlice.model_validate(obj)
    assert [ep.addresses for ep in model.endpoints or []] == [["10.180.0.1"], ["10.180.0.2"]]


def test_endpointslice_fqdn_addresses_are_names() -> None:
    obj = endpoint_slice(endpoints=[endpoint("010.example.com"), endpoint("010.0.0.1")])
    obj["addressType"] = "FQDN"
    errors, warnings = validated(obj)
    assert errors == [] and warnings == []
    model = EndpointSlice.model_validate(obj)
    assert [ep.addresses for ep in model.endpoints or []] == [["010.example.com"], ["010.0.0.1"]]


def test_endpoints_addresses_as_the_mirroring_controller_restringifies_them() -> None:
    # pkg/controller/endpointslicemirroring/utils.go addressToEndpoint: ParseIPSloppy, ip.String()
    obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "svc1", "namespace": "ns1"},
        "subsets": [
            {
                "addresses": [{"ip": "10.180.0.01"}],
                "notReadyAddresses": [{"ip": "010.180.0.2"}],
                "ports": [{"port": 8080}],
            }
        ],
    }
    errors, warnings = validated(obj)
    assert errors == []
    assert len(warnings) == 1
    assert (
        "Endpoints ns1/svc1: subsets[0].addresses[0].ip, subsets[0].notReadyAddresses[0].ip: " in warnings[0]
    )
    model = Endpoints.model_validate(obj)
    assert model.subsets[0].addresses[0].ip == "10.180.0.1"
    assert model.subsets[0].not_ready_addresses[0].ip == "10.180.0.2"


def test_a_strict_object_is_itself_and_warns_nothing() -> None:
    obj = service(externalIPs=["10.0.0.1"])
    assert validated(obj) == ([], [])
    assert Service.model_validate(obj).legacy_values == ()


# -- everything else stays strict ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns1"},
                "status": {"podIP": "010.0.0.1", "podIPs": [{"ip": "010.0.0.1"}]},
            },
            "status.pod",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "node1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.02"}]},
            },
            "status.addresses[0]",
        ),
        (endpoint_slice(endpoints=[endpoint("010.0.0.1")]) | {"addressType": "IPv6"}, "endpoints[0]"),
        (service(clusterIP="0256.0.0.1"), "spec.clusterIP"),
    ],
)
def test_other_kinds_and_values_stay_strict(obj: dict[str, Any], field: str) -> None:
    errors, warnings = validated(obj)
    assert errors and field in errors[0], errors
    assert warnings == []


def test_compile_flags_stay_strict() -> None:
    result = CliRunner().invoke(
        app, ["compile", "--node-name", "node1", "--node-ip", "192.168.0.02"], input=to_yaml(service())
    )
    assert result.exit_code == 2 and "192.168.0.02" in result.stderr


# -- the whole path: the IR, the memo, the CLI ---------------------------------------------------


def _legacy_cluster() -> str:
    return to_yaml(
        service(clusterIP="172.30.0.041", externalIPs=["192.168.099.1"]),
        endpoint_slice(endpoints=[endpoint("010.180.0.041"), endpoint("10.180.1.42", node="node2")]),
    )


def _canonical_cluster() -> str:
    return to_yaml(
        service(clusterIP="172.30.0.41", externalIPs=["192.168.99.1"]),
        endpoint_slice(endpoints=[endpoint("10.180.0.41"), endpoint("10.180.1.42", node="node2")]),
    )


def test_the_plan_is_that_of_the_canonical_values() -> None:
    legacy = build_plan([Source("in.yaml", _legacy_cluster().encode())], CONFIG)
    canonical = build_plan([Source("in.yaml", _canonical_cluster().encode())], CONFIG)
    assert legacy.plan == canonical.plan


def test_objects_the_memo_vouches_for_are_read_canonically_too() -> None:
    """A memo-assisted compile of a JSON List builds the models of the items it knows valid
    without validating them; they carry the canonical values as well (resolve reads only
    those), and their warning is not repeated (the memo's word replaces the validation)."""
    items = list(yaml.safe_load_all(_legacy_cluster()))

    def as_list(objects: list[dict[str, Any]]) -> Source:
        return Source("in.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode())

    first = compile_sources([as_list(items)], CONFIG, fingerprint=True)
    assert len([w for w in first.warnings if "leading zeros" in w.message]) == 2
    # Another endpoint: the Service (unchanged, trusted) is resolved again from the memo's word.
    items[1]["endpoints"][1]["addresses"] = ["10.180.1.43"]
    again = compile_sources([as_list(items)], CONFIG, MemoryMemo.of(first))
    assert again.objects is not None and 0 in again.objects.trusted  # the Service: not validated
    full = compile_sources([as_list(items)], CONFIG)
    assert again.plan() == full.plan()
    assert again.plan().service_ports[0].cluster_ip == "172.30.0.41"
    assert [w.obj for w in again.warnings if "leading zeros" in w.message] == ["ns1/svc1-abcde"]


def test_cli_warns_once_per_object_and_exits_0() -> None:
    result = CliRunner().invoke(
        app, ["compile", "--backend", "iptables", *NODE_ARGS], input=_legacy_cluster()
    )
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "leading zeros" in line]
    assert len(lines) == 2
    assert lines[0].startswith("warning: <stdin>: Service ns1/svc1: spec.clusterIP, spec.externalIPs[0]: ")
    assert lines[1].startswith("warning: <stdin>: EndpointSlice ns1/svc1-abcde: endpoints[0].addresses[0]: ")
    assert "-d 172.30.0.41 " in result.stdout and "--to-destination 10.180.0.41:8080" in result.stdout
    assert "041" not in result.stdout and "099" not in result.stdout


@pytest.mark.parametrize("backend", [*available_backends(), "ir"])
def test_golden_case_renders_as_its_canonical_form(backend: str) -> None:
    """golden/legacy-addresses: every output is that of the same objects written canonically."""
    folder = Path(__file__).resolve().parents[2] / "golden" / "legacy-addresses"

    def output(name: str) -> str:
        flag = ["-o", "ir"] if backend == "ir" else ["--backend", backend]
        result = CliRunner().invoke(app, ["compile", "-f", str(folder / name), *flag, *NODE_ARGS])
        assert result.exit_code == 0, result.stderr
        return result.stdout.replace(name, "<input>")

    assert output("input.yaml") == output("canonical.yaml")
