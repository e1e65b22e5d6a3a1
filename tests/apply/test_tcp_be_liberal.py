"""net.netfilter.nf_conntrack_tcp_be_liberal: kube-proxy's nftables mode has no `ct state invalid
drop` and relies on conntrack accepting out-of-window packets instead (conntrack.tcpBeLiberal,
set by cmd/kube-proxy/app/conntrack.go SetTCPBeLiberal). `apply` sets it for the nftables backend
once the rules are known good, says so on stderr, and leaves it alone when told not to
(--no-conntrack-tcp-be-liberal, or tcpBeLiberal: false in the config file) and for iptables, whose
ruleset drops invalid packets itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Host, small_cluster

pytestmark = pytest.mark.root

LIBERAL = "net.netfilter.nf_conntrack_tcp_be_liberal"


def liberal(host: Host) -> str:
    return host.run(["sysctl", "-n", LIBERAL]).stdout.strip()


def reset(host: Host) -> None:
    host.run(["sysctl", "-qw", f"{LIBERAL}=0"])
    assert liberal(host) == "0"


def test_nftables_apply_sets_tcp_be_liberal_and_says_so(host: Host, manifests: Path) -> None:
    path = manifests / "cluster.yaml"
    path.write_text(small_cluster())
    reset(host)
    proc = host.cli("apply", "-f", str(path), backend="nftables")
    assert proc.returncode == 0, proc.stderr
    assert f"set sysctl {LIBERAL}=1 (was 0)" in proc.stderr
    assert liberal(host) == "1"
    assert "invalid" not in host.ours_nft()
    # Reset behind our back: the next apply (no rule change) sets it again.
    reset(host)
    proc = host.cli("apply", "-f", str(path), backend="nftables")
    assert proc.returncode == 0 and f"set sysctl {LIBERAL}=1 (was 0)" in proc.stderr, proc.stderr
    assert liberal(host) == "1"


def test_tcp_be_liberal_is_left_alone_when_turned_off_or_for_iptables(host: Host, manifests: Path) -> None:
    path = manifests / "cluster.yaml"
    path.write_text(small_cluster())
    config = manifests / "kube-proxy.yaml"
    config.write_text(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        "mode: nftables\nconntrack:\n  tcpBeLiberal: false\n"
    )
    reset(host)
    proc = host.cli("apply", "-f", str(path), "--no-conntrack-tcp-be-liberal", backend="nftables")
    assert proc.returncode == 0 and LIBERAL not in proc.stderr, proc.stderr
    proc = host.cli("apply", "-f", str(path), "--config", str(config), backend="nftables")
    assert proc.returncode == 0 and LIBERAL not in proc.stderr, proc.stderr
    assert liberal(host) == "0"
    assert host.cli("cleanup", backend="nftables").returncode == 0
    proc = host.cli("apply", "-f", str(path), backend="iptables")
    assert proc.returncode == 0 and LIBERAL not in proc.stderr, proc.stderr
    assert liberal(host) == "0"
    # --no-sysctl: the refusal names the sysctl the nftables rules rely on.
    proc = host.cli("apply", "-f", str(path), "--no-sysctl", backend="nftables")
    assert proc.returncode == 1 and f"{LIBERAL}=1" in proc.stderr, proc.stderr
