"""Backend-neutral rule loading, plus the bridge to the real ``svc2rules compile`` CLI.

A *loader* is anything with a ``name`` (also the ``--backend`` name given to the compiler) and
``load(node_netns, ruleset_text)`` that installs the rules into the node namespace or raises with
the tool's stderr. New backends (e.g. IPVS in a VM) plug in by passing their own loader.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from .netns import CommandError, exec_in
from .topology import CLUSTER_CIDR, NODE_IP

NODE_NAME = "node1"


class LoadError(RuntimeError):
    pass


@runtime_checkable
class Loader(Protocol):
    @property
    def name(self) -> str:
        """Short backend name; also what ``svc2rules compile --backend`` is given."""
        ...

    def load(self, node_netns: str, ruleset_text: str) -> None: ...


@dataclass(frozen=True)
class IptablesLoader:
    """``iptables-restore --noflush``: the payload creates its own chains and base-chain jumps."""

    name: str = "iptables"

    def load(self, node_netns: str, ruleset_text: str) -> None:
        try:
            # -w: wait for the xtables lock (legacy iptables; other tests may hold it), bounded.
            exec_in(node_netns, ["iptables-restore", "-w", "60", "--noflush"], input_text=ruleset_text)
        except CommandError as exc:
            raise LoadError(f"{self.name}: {exc}") from exc


@dataclass(frozen=True)
class NftablesLoader:
    name: str = "nftables"

    def load(self, node_netns: str, ruleset_text: str) -> None:
        try:
            exec_in(node_netns, ["nft", "-f", "-"], input_text=ruleset_text)
        except CommandError as exc:
            raise LoadError(f"{self.name}: {exc}") from exc


class CompilerMissing(RuntimeError):
    pass


def svc2rules_command() -> list[str]:
    """The real CLI: the console script next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("svc2rules")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("svc2rules")
    if found:
        return [found]
    raise CompilerMissing("no svc2rules executable next to the interpreter or on PATH")


def compile_manifest(
    backend: str,
    manifest: str,
    *,
    node_name: str = NODE_NAME,
    node_ip: str = NODE_IP,
    cluster_cidr: str = CLUSTER_CIDR,
    masquerade_all: bool = False,
    extra_args: tuple[str, ...] = (),
) -> str:
    """Compile a manifest (YAML text) with ``svc2rules compile`` and return the rules text.

    Results are memoised per process: the CLI costs ~0.5 s of CPU per run, and the mutation checks
    recompile the scenarios' manifests verbatim.
    """
    key = (backend, manifest, node_name, node_ip, cluster_cidr, masquerade_all, extra_args)
    if key not in _compiled:
        _compiled[key] = _run_compiler(
            backend, manifest, node_name, node_ip, cluster_cidr, masquerade_all, extra_args
        )
    return _compiled[key]


_compiled: dict[tuple[str, str, str, str, str, bool, tuple[str, ...]], str] = {}


def _run_compiler(
    backend: str,
    manifest: str,
    node_name: str,
    node_ip: str,
    cluster_cidr: str,
    masquerade_all: bool,
    extra_args: tuple[str, ...],
) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="s2r-lab-", delete=False) as fh:
        fh.write(manifest)
        path = fh.name
    try:
        argv = [
            *svc2rules_command(),
            "compile",
            "--backend",
            backend,
            "-f",
            path,
            "--node-name",
            node_name,
            "--node-ip",
            node_ip,
            "--cluster-cidr",
            cluster_cidr,
            *(["--masquerade-all"] if masquerade_all else []),
            *extra_args,
        ]
        # Bounds a hang only: a timeout here would also make compiler_supports() drop a backend.
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


_PROBE_MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: probe, namespace: default}
spec:
  clusterIP: 172.30.0.1
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
"""


@functools.cache
def compiler_supports(backend: str) -> bool:
    """Whether ``svc2rules compile --backend BACKEND`` works at all (e.g. a renderer exists)."""
    try:
        return bool(compile_manifest(backend, _PROBE_MANIFEST).strip())
    except (CompilerMissing, CommandError, subprocess.TimeoutExpired, OSError):
        return False


def available_loaders() -> list[Loader]:
    """Loaders the ``backend`` fixture is parametrised with.

    ``S2R_LAB_BACKENDS=iptables,nftables`` forces the list (a missing compiler backend then fails
    loudly instead of silently shrinking the matrix). Otherwise: iptables whenever
    iptables-restore exists; nftables once ``nft`` exists and the compiler can render it.
    """
    known: dict[str, Loader] = {"iptables": IptablesLoader(), "nftables": NftablesLoader()}
    forced = os.environ.get("S2R_LAB_BACKENDS")
    if forced:
        return [known[n.strip()] for n in forced.split(",") if n.strip()]
    out: list[Loader] = []
    if shutil.which("iptables-restore"):
        out.append(known["iptables"])
    if shutil.which("nft") and compiler_supports("nftables"):
        out.append(known["nftables"])
    return out
