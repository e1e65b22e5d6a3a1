"""The backend registry and what a backend declares.

A backend is a subpackage of `svc2rules.backends` exposing `BACKEND`, found by name, so adding
one touches nothing outside its own package, its templates and its goldens. It declares the
families it serves, how it reads its own flags into typed options, its renderer, its applier
(if its rules can be loaded onto a host) and the facts `explain` needs about its dataplane.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from svc2rules.errors import UsageError
from svc2rules.family import IPFamily
from svc2rules.ir import Plan

if TYPE_CHECKING:
    from svc2rules.backends.applier import Applier

DEFAULT_CHAIN_PREFIX = "SVC2R"
DEFAULT_TABLE = "svc2rules"
# kube-proxy drops per-endpoint comments above this many endpoints (largeClusterMode): they
# cost load time and kernel memory. Every backend's `auto` follows the same threshold.
LARGE_CLUSTER_ENDPOINTS = 1000

OptionsT = TypeVar("OptionsT")


class Comments(StrEnum):
    """--comments: auto (kube-proxy's choice), always or never."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"

    @property
    def on(self) -> bool:
        """Whether rules carry comments at all."""
        return self is not Comments.NEVER

    def per_endpoint(self, endpoints: int) -> bool:
        """Whether per-endpoint rules and elements carry comments, given the plan's endpoints."""
        if self is Comments.AUTO:
            return endpoints <= LARGE_CLUSTER_ENDPOINTS
        return self is Comments.ALWAYS


@dataclass(frozen=True, slots=True)
class RenderOptions(Generic[OptionsT]):
    """Output choices that do not change the semantics. `backend` holds the backend's own typed
    options (None: its defaults)."""

    comments: Comments = Comments.AUTO
    chain_prefix: str = DEFAULT_CHAIN_PREFIX
    table: str = DEFAULT_TABLE
    jumps: bool = True
    backend: OptionsT | None = None

    def __post_init__(self) -> None:
        # A plain string ("never") from a caller is read as the enum it names.
        object.__setattr__(self, "comments", Comments(self.comments))


@dataclass(frozen=True, slots=True)
class ArtifactPart:
    """One loadable piece: what a target's writer produced for one family (None: a family-less
    output such as DNS records), and the tool that loads it."""

    family: IPFamily | None
    loader: str
    text: str


@dataclass(frozen=True, slots=True)
class Artifact:
    """What a backend produced: its parts in load order, plus notes for the user."""

    backend: str
    parts: tuple[ArtifactPart, ...]
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts)


@dataclass(frozen=True, slots=True)
class DataplaneFacts:
    """What `explain` needs to know about a backend's dataplane."""

    # Whether it follows kube-proxy's iptables/nftables semantics, which explain models.
    kube_proxy_semantics: bool = False
    # kube-proxy's iptables mode alone serves NodePorts on 127.0.0.1 (localhostNodePorts).
    localhost_nodeports: bool = False
    # How ClientIP affinity is remembered, for explain's note (None: not said).
    affinity_scope: str | None = None
    # kube-proxy's nftables mode: an unset nodePortAddresses means `primary`, the no-endpoint
    # verdicts of NodePorts match the addresses the dispatch matches, and with service CIDRs the
    # ClusterIP guard refuses undefined ports and unallocated service IPs (cluster-ips-check).
    nftables_semantics: bool = False


def check_chain_prefix(prefix: str) -> str:
    """The one rule every backend's chain prefix follows (UsageError naming the flag): the longest
    chain name any backend makes is kube-proxy's endpoint chain, <prefix>-SEP-<hash>, and the
    prefix leaves room for it within the kernel's limit."""
    # Imported here: only the xtables backends need it, and a run imports only what it uses.
    from svc2rules.syntax.xtables.names import CHAIN_NAME_MAX, HASH_LENGTH

    longest = CHAIN_NAME_MAX - len("-SEP-") - HASH_LENGTH
    if not prefix or len(prefix) > longest or not prefix.replace("-", "").isalnum():
        raise UsageError(
            f"--chain-prefix: must be 1-{longest} letters, digits or '-' (the longest chain name, "
            f"<prefix>-SEP-<hash>, must fit the kernel's {CHAIN_NAME_MAX} characters), got {prefix!r}"
        )
    return prefix


def no_options(flags: Mapping[str, str]) -> None:
    """The options reader of a backend that has none."""
    return None


@dataclass(frozen=True, slots=True)
class Backend(Generic[OptionsT]):
    name: str
    summary: str
    families: frozenset[IPFamily]
    render: Callable[[Plan, RenderOptions[OptionsT]], Artifact]
    # Reads the backend's flags (flag name without dashes, e.g. "nft_layout" -> value) into its
    # options; raises UsageError naming the flag.
    options: Callable[[Mapping[str, str]], OptionsT | None] = no_options
    applier: Callable[[RenderOptions[OptionsT]], Applier[Any, Any, Any]] | None = None
    facts: DataplaneFacts = DataplaneFacts()


def available_backends() -> list[str]:
    import svc2rules.backends as pkg

    return sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg and not m.name.startswith("_")
    )


def get_backend(name: str) -> Backend[Any]:
    if name not in available_backends():
        choices = ", ".join(available_backends())
        raise UsageError(f"unknown backend {name!r} (choose from: {choices})")
    module = importlib.import_module(f"svc2rules.backends.{name}")
    backend: Backend[Any] = module.BACKEND
    return backend
