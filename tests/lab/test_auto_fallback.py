"""`svc2rules apply --backend auto` on this machine's kernel, which has no IPVS: it says so,
falls back to iptables (kube-proxy's seed behaviour), and traffic flows through the rules it
installed. (Where the kernel has IPVS, auto picks ipvs: tests/backends/ipvs/test_vm.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from svc2rules.backends.ipvs.support import ipvs_unavailable

from .lab import Lab
from .loaders import NODE_NAME, svc2rules_command
from .manifests import Ep, endpoint_slice, manifest, port, service
from .probe import Answered, Probe
from .topology import CLUSTER_CIDR, NODE_ADDRESSES, NODE_IP

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_apply_backend_auto_falls_back_to_iptables_and_traffic_flows(lab: Lab, tmp_path: Path) -> None:
    reason = ipvs_unavailable()
    if reason is None:
        pytest.skip("this kernel has IPVS, so auto picks ipvs here: the fallback cannot be exercised")
    lab.add_pods(["10.180.0.1", "10.180.0.2"], [8080])
    source = tmp_path / "web.yaml"
    source.write_text(
        manifest(
            service(
                "web",
                cluster_ip="172.30.0.10",
                type="NodePort",
                ports=[port("http", 80, 8080, node_port=30080)],
            ),
            endpoint_slice("web", [Ep("10.180.0.1"), Ep("10.180.0.2", local=False)], [("http", 8080)]),
        )
    )
    argv = [*svc2rules_command(), "apply", "--backend", "auto", "-f", str(source)]
    argv += ["--state-dir", str(tmp_path / "state"), "--node-name", NODE_NAME, "--node-ip", NODE_IP]
    argv += ["--cluster-cidr", CLUSTER_CIDR]
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.node_netns, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "falling back to the iptables backend" in proc.stderr, proc.stderr
    assert reason in proc.stderr
    assert (tmp_path / "state" / "iptables.json").exists()
    assert "-A SVC2R-SERVICES" in lab.node_exec(["iptables-save", "-t", "nat"])

    clusterip, nodeport = lab.probe_many(
        [Probe("ext", "172.30.0.10", 80, count=20), Probe("ext", NODE_IP, 30080, count=20)]
    )
    for result in (clusterip, nodeport):
        assert result.all(Answered), result.summary()
        assert result.endpoint_set == {"10.180.0.1:8080", "10.180.0.2:8080"}, result.summary()
        assert result.saw_sources <= NODE_ADDRESSES, result.summary()  # masqueraded
