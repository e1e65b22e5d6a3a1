"""The service CIDRs of the plan: --service-cidr and networking.k8s.io/v1 ServiceCIDR objects,
validated as kube-apiserver validates them (pkg/apis/networking/validation, ValidateServiceCIDR;
apimachinery/pkg/api/validation/ip.go, IsValidCIDR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from svc2rules.agent.live import LiveCompiler
from svc2rules.cli import app
from svc2rules.config import ProxyConfig, read_config
from svc2rules.errors import UsageError
from svc2rules.ir import NO_SERVICE_CIDR_NOTE
from svc2rules.load import Source
from tests.conftest import NODE_ARGS, endpoint_slice, service, to_yaml
from tests.unit.derive_helpers import pod

runner = CliRunner()


def service_cidr(*cidrs: str, name: str = "kubernetes", api: str = "networking.k8s.io/v1") -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "spec": {"cidrs": list(cidrs)},
    }


def ir(*objects: dict[str, Any], args: tuple[str, ...] = ()) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["compile", "-o", "ir", *NODE_ARGS, *args], input=to_yaml(*objects))
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}, result.stderr


def test_without_service_cidrs_the_plan_has_none_and_ir_says_there_is_no_guard() -> None:
    code, plan, _ = ir(service(), endpoint_slice())
    assert code == 0
    assert plan["serviceCIDRs"] == [] and plan["notes"] == [NO_SERVICE_CIDR_NOTE]


def test_flag_and_objects_are_merged_sorted_deduplicated() -> None:
    code, plan, err = ir(
        service(),
        endpoint_slice(),
        service_cidr("10.96.0.0/16", "fd00:10:96::/112"),
        service_cidr("10.97.0.0/16", name="extra", api="networking.k8s.io/v1beta1"),
        args=("--service-cidr", "fd00:10:96::/112", "--service-cidr", "10.96.0.0/12"),
    )
    assert code == 0, err
    assert plan["serviceCIDRs"] == ["10.96.0.0/12", "10.96.0.0/16", "10.97.0.0/16", "fd00:10:96::/112"]
    assert plan["notes"] == []
    assert plan["config"]["service_cidrs"] == ["10.96.0.0/12", "fd00:10:96::/112"]
    assert "skipped" not in err  # ServiceCIDR is read, no longer skipped


@pytest.mark.parametrize(
    ("cidrs", "expected"),
    [
        ((), "spec.cidrs: Required value: at least one CIDR required"),
        (("10.0.0.0/16", "10.1.0.0/16"), "spec.cidrs: Invalid value"),
        (("10.0.0.0/16", "fd00::/64", "10.1.0.0/16"), "may only hold up to 2 values"),
        (("10.0.0.1/16",), 'spec.cidrs[0]: Invalid value: "10.0.0.1/16": must not have bits set beyond'),
        (("010.0.0.0/16",), "must not have leading 0s in IP or prefix length"),
        (("10.0.0.0/016",), "must not have leading 0s in IP or prefix length"),
        (("FD00::/64",), 'must be in canonical form ("fd00::/64")'),
        (("::ffff:10.0.0.0/104",), "must not have an IPv4-mapped IPv6 address"),
        (("10.0.0.0",), "must be a valid CIDR value"),
    ],
)
def test_invalid_service_cidr_objects_are_refused_naming_the_field(
    cidrs: tuple[str, ...], expected: str
) -> None:
    code, _, err = ir(service(), service_cidr(*cidrs))
    assert code == 2
    assert "ServiceCIDR" in err and expected in err and err.count("\n") == 1


def test_the_flag_takes_one_cidr_per_family_and_warns_about_host_bits() -> None:
    with pytest.raises(UsageError, match="--service-cidr: at most one service CIDR per IP family"):
        read_config({"service_cidrs": ("10.96.0.0/12", "10.100.0.0/16")})
    built = read_config({"service_cidrs": ("10.96.0.1/12",)})
    assert built.config.service_cidrs == ("10.96.0.0/12",)
    assert any("host bits" in w for w in built.warnings)
    with pytest.raises(UsageError, match="--service-cidr: invalid CIDR"):
        read_config({"service_cidrs": ("fe80::/64%eth0",)})
    assert ProxyConfig(service_cidrs=("fd00::/108", "10.96.0.0/12")).service_cidrs == (
        "10.96.0.0/12",
        "fd00::/108",
    )


def test_a_service_cidr_named_like_a_service_is_no_member_of_it() -> None:
    """The default ServiceCIDR is named "kubernetes", like the default/kubernetes Service: it
    must not count as that Service's object (which would stop its endpoints coming from Pods)."""
    svc = service("kubernetes", "default", selector={"app": "web"})
    pods = [pod("api-0", "10.180.0.7", namespace="default")]
    code, plan, err = ir(svc, *pods, service_cidr("172.30.0.0/16"))
    assert code == 0, err
    (sp,) = plan["servicePorts"]
    assert [ep["ip"] for ep in sp["cluster_endpoints"]] == ["10.180.0.7"]
    assert plan["serviceCIDRs"] == ["172.30.0.0/16"]


def test_a_compilation_that_did_not_read_the_objects_keeps_the_flags_service_cidrs() -> None:
    """svc2rules run's live compile resolves Service by Service and reads no ServiceCIDR:
    --service-cidr still gives the plan its service CIDRs (the ClusterIP guard)."""
    config = ProxyConfig(node_name="node1", service_cidrs=("172.30.0.0/16",))
    source = Source("/m/a.yaml", to_yaml(service(), endpoint_slice()).encode())
    live = LiveCompiler(config)
    update = live.load([((0, Path("/m/a.yaml")), source)])
    assert update.compilation.plan().service_cidrs == ("172.30.0.0/16",)
