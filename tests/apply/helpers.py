"""Running `svc2rules apply|diff|cleanup` inside throw-away network namespaces, and reading
back what we own (and what we don't) in the kernel's own spelling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import NODE_ARGS, endpoint, endpoint_slice, service, to_yaml
from tests.lab import netns as labns

PREFIX = "SVC2R-"
MARKER_CHAIN = "SVC2R-APPLIED"
CLI = str(Path(sys.executable).with_name("svc2rules"))
BACKENDS = ("iptables", "nftables")


def require_root() -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and loads rules into the real kernel")
    missing = [t for t in ("ip", "iptables-restore", "nft", "unshare") if not labns_which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def labns_which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None
    )


@dataclass
class Host:
    """One network namespace standing in for a node, with its own state directory."""

    name: str
    state_dir: Path

    def run(
        self, argv: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=1800,  # bounds a hang: a big load on a busy machine takes minutes
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc

    def cli(
        self, command: str, *args: str, backend: str = "iptables", stdin: str | None = None, node: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [CLI, command, "--backend", backend, "--state-dir", str(self.state_dir), *args]
        if node and command != "cleanup":
            argv += NODE_ARGS
        return self.run(argv, stdin=stdin, check=False)

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def apply_argv(self, manifest: Path, backend: str, *extra: str) -> list[str]:
        return [
            CLI,
            "apply",
            "--backend",
            backend,
            "--state-dir",
            str(self.state_dir),
            "-f",
            str(manifest),
            *NODE_ARGS,
            *extra,
        ]

    # -- reading the kernel --------------------------------------------------------------------

    def save(self, table: str) -> str:
        return self.run(["iptables-save", "-t", table], check=False).stdout

    def ours_iptables(self, with_marker: bool = False) -> str:
        """Our chains and jump rules, as iptables-save prints them (declarations sorted)."""
        out: list[str] = []
        for table in ("nat", "filter"):
            decl, rules = [], []
            for line in self.save(table).splitlines():
                if line.startswith(":" + PREFIX):
                    if with_marker or not line.startswith(":" + MARKER_CHAIN):
                        decl.append(f"{table} {line.split()[0]}")
                elif line.startswith("-A "):
                    chain = line.split()[1]
                    if chain.startswith(PREFIX):
                        if with_marker or chain != MARKER_CHAIN:
                            rules.append(f"{table} {line}")
                    elif f"-j {PREFIX}" in line or f"-g {PREFIX}" in line:
                        rules.append(f"{table} {line}")
            out += sorted(decl) + rules
        return "\n".join(out)

    def foreign_iptables(self) -> str:
        """Everything that is not ours, without counters and the save's timestamps."""
        out: list[str] = []
        for table in ("nat", "filter"):
            for line in self.save(table).splitlines():
                if line.startswith("#"):
                    continue
                if line.startswith(":" + PREFIX):
                    continue
                if line.startswith("-A ") and (
                    line.split()[1].startswith(PREFIX) or f"-j {PREFIX}" in line or f"-g {PREFIX}" in line
                ):
                    continue
                out.append(line)
        return "\n".join(out)

    def ours_nft(self, table: str = "svc2rules") -> str:
        """Our table without the generation marker, elements sorted (hash order varies)."""
        proc = self.run(["nft", "list", "table", "ip", table], check=False)
        if proc.returncode != 0:
            return ""
        from svc2rules.backends.nftables.model import MARKER_SET
        from svc2rules.syntax.nftables import normalised

        return normalised(proc.stdout, skip=(MARKER_SET,))

    def ours(self, backend: str) -> str:
        return self.ours_iptables() if backend == "iptables" else self.ours_nft()

    def ruleset(self) -> str:
        return self.run(["nft", "list", "ruleset"], check=False).stdout


def new_host(tmp: Path, role: str = "apply") -> Host:
    labns.install_cleanup_hooks()
    labns.reap_stale_once()
    name = labns.netns_name(labns.new_test_id(), role)
    labns.register([name])
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    state = tmp / f"state-{role}"
    return Host(name, state)


def drop_host(host: Host) -> None:
    labns.delete_netns([host.name])


# -- manifests -----------------------------------------------------------------------------------


def small_cluster(endpoints: Sequence[str] = ("10.180.0.1", "10.180.0.2"), extra: bool = True) -> str:
    """A few Services exercising nat and filter: endpoints, no endpoints (REJECT), UDP, NodePort."""
    objects: list[dict[str, Any]] = [
        service(
            "web",
            "shop",
            clusterIP="172.30.0.41",
            type="NodePort",
            ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
        ),
        endpoint_slice(
            "web", "shop", [endpoint(ip) for ip in endpoints], ports=[{"name": "http", "port": 8080}]
        ),
        service(
            "dns",
            "kube-system",
            clusterIP="172.30.0.10",
            ports=[{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}],
        ),
        endpoint_slice(
            "dns",
            "kube-system",
            [endpoint("10.180.0.5")],
            ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}],
        ),
    ]
    if extra:
        objects.append(service("empty", "shop", clusterIP="172.30.0.42"))
    return to_yaml(*objects)


def synthetic_cluster(services: int, endpoints: int, *, shift: int = 0) -> str:
    """`services` ClusterIP Services x `endpoints` endpoints; `shift` moves every endpoint,
    so two clusters with different shifts share no per-Service chain."""
    import json

    items: list[dict[str, Any]] = []
    for i in range(services):
        name = f"svc-{i:05d}"
        ns = f"ns-{i % 20:02d}"
        vip = f"172.20.{i // 250}.{i % 250 + 1}"
        items.append(
            service(name, ns, clusterIP=vip, ports=[{"name": "http", "port": 80, "targetPort": 8080}])
        )
        eps = []
        for j in range(endpoints):
            n = i * endpoints + j + shift * 7 + 1
            eps.append(
                endpoint(
                    f"10.{128 + n // 65536}.{n // 256 % 256}.{n % 256}", "node1" if j % 3 == 0 else "node2"
                )
            )
        items.append(endpoint_slice(name, ns, eps, ports=[{"name": "http", "port": 8080}]))
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
