"""apply without node flags takes the node facts from the host it runs on, as kube-proxy does:
the hostname, and the address of the default route's interface; each is said on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import endpoint, endpoint_slice, service, to_yaml

from .helpers import CLI, Host

pytestmark = pytest.mark.root

HOSTNAME = "Node-A"  # kube-proxy lower-cases it: the node is node-a
ADDRESS = "192.0.2.10"
CIDR = ["--cluster-cidr", "10.0.0.0/8"]

# A Local-policy NodePort whose only endpoint is on node-a: with the node name the rules send
# outside traffic to it; without, they drop it. So the rules show which name was used.
MANIFEST = to_yaml(
    service(
        "web",
        "shop",
        clusterIP="172.30.0.41",
        type="NodePort",
        externalTrafficPolicy="Local",
        ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
    ),
    endpoint_slice("web", "shop", [endpoint("10.180.0.1", "node-a")], ports=[{"name": "http", "port": 8080}]),
)


def on_node(host: Host, *argv: str) -> tuple[int, str, str]:
    """Run argv in the namespace under its own hostname (a UTS namespace of its own)."""
    command = ["unshare", "--uts", "sh", "-c", f'hostname {HOSTNAME} && exec "$@"', "sh", *argv]
    proc = host.run(command, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def with_default_route(host: Host) -> None:
    for argv in (
        ["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"],
        ["ip", "addr", "add", f"{ADDRESS}/24", "dev", "uplink0"],
        ["ip", "link", "set", "uplink1", "up"],
        ["ip", "link", "set", "uplink0", "up"],
        ["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink0"],
    ):
        host.run(argv)


def test_apply_without_node_flags_uses_and_reports_the_hosts_name_and_address(
    host: Host, manifests: Path
) -> None:
    with_default_route(host)
    (manifests / "web.yaml").write_text(MANIFEST)
    state = ["--state-dir", str(host.state_dir), "-f", str(manifests)]
    code, _, err = on_node(host, CLI, "apply", *state, *CIDR)
    assert code == 0, err
    assert "node name: node-a (this host's name; --node-name sets another)\n" in err
    assert (
        f"node IP: {ADDRESS} (IPv4 address of uplink0, the default route's interface; --node-ip sets another)\n"
        in err
    )
    assert "warning" not in err, err
    # What was loaded is what these facts given as flags compile to.
    explicit = ["--node-name", "node-a", "--node-ip", ADDRESS, *CIDR]
    code, out, err = on_node(host, CLI, "diff", *state, *explicit)
    assert code == 0, out + err
    # The endpoint on node-a is local: outside traffic to the NodePort reaches it.
    assert "10.180.0.1" in host.run(["iptables-save", "-t", "nat"]).stdout


def test_flags_win_over_the_host_and_nothing_is_said_of_them(host: Host, manifests: Path) -> None:
    with_default_route(host)
    (manifests / "web.yaml").write_text(MANIFEST)
    explicit = ["-f", str(manifests), "--node-name", "node-b", "--node-ip", "192.168.0.2", *CIDR]
    code, out, err = on_node(host, CLI, "apply", "--dry-run", "--state-dir", str(host.state_dir), *explicit)
    assert code == 0, err
    assert "node name:" not in err and "node IP:" not in err
    # A dry run of a first apply prints exactly what compile prints with the same flags.
    assert out == on_node(host, CLI, "compile", *explicit)[1]


def test_a_host_without_a_default_route_gets_the_warning_compile_gives(host: Host, manifests: Path) -> None:
    (manifests / "web.yaml").write_text(MANIFEST)
    argv = ["apply", "--dry-run", "--state-dir", str(host.state_dir), "-f", str(manifests), *CIDR]
    code, _, err = on_node(host, CLI, *argv)
    assert code == 0, err
    assert "node name: node-a" in err
    assert "warning: can't determine this node's IP" in err
