"""The scenarios have teeth: remove one behaviour from the compiled rules and a scenario must fail.

Guards against a lab regression that would make scenario assertions vacuous (e.g. every probe
answered by something, whatever the rules). Mutations edit iptables-restore text, so this runs
with the iptables loader only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from . import test_scenarios
from .conftest import require_root
from .lab import Lab
from .loaders import IptablesLoader

pytestmark = [pytest.mark.root, pytest.mark.lab]


def _without(pattern: str) -> Callable[[str], str]:
    rx = re.compile(pattern)
    return lambda text: "".join(line for line in text.splitlines(keepends=True) if not rx.search(line))


def _no_statistic(text: str) -> str:
    return re.sub(r"-m statistic --mode random --probability \S+", "", text)


def _skewed(text: str) -> str:
    """The first of four endpoints gets 1/2 instead of 1/4: all still hit, but not uniformly."""
    return text.replace("--probability 0.2500000000", "--probability 0.5000000000")


@dataclass(frozen=True)
class MutatingLoader:
    mutate: Callable[[str], str]
    name: str = "iptables"

    def load(self, node_netns: str, ruleset_text: str) -> None:
        IptablesLoader().load(node_netns, self.mutate(ruleset_text))


CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("no-masquerade", _without(r"-j \S*MARK-MASQ\b"), "test_masquerade_for_off_cluster_sources"),
    ("no-masquerade", _without(r"-j \S*MARK-MASQ\b"), "test_hairpin"),
    ("first-endpoint-only", _no_statistic, "test_clusterip_spreads_over_all_endpoints"),
    ("first-endpoint-only", _no_statistic, "test_udp_service"),
    ("skewed", _skewed, "test_clusterip_spreads_over_all_endpoints"),
    ("no-affinity-check", _without(r"--rcheck"), "test_session_affinity_client_ip"),
    ("no-reject", _without(r"-j REJECT\b"), "test_no_endpoints_rejects_tcp_and_udp"),
    ("no-drop", _without(r"-j DROP\b"), "test_internal_traffic_policy_local"),
    ("no-source-ranges", _without(r"-j \S*-FW-|PROXY-FIREWALL.*-j DROP"), "test_load_balancer_source_ranges"),
    ("no-nodeports", _without(r"-j \S*-NODEPORTS\b"), "test_node_port"),
    ("no-pod-short-circuit", _without(r"pod traffic for"), "test_external_traffic_policy_local"),
]


@pytest.mark.parametrize(("mutation", "mutate", "scenario"), CASES, ids=[f"{m}-{s[5:]}" for m, _, s in CASES])
def test_scenario_catches_missing_behaviour(
    mutation: str, mutate: Callable[[str], str], scenario: str
) -> None:
    require_root()
    run_scenario = getattr(test_scenarios, scenario)
    with Lab.create() as lab, pytest.raises(AssertionError):
        run_scenario(lab, MutatingLoader(mutate))
