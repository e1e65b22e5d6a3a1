"""The one options builder: flags (and a kube-proxy config file) -> node config, backend and
render options, the same for compile, apply, diff, cleanup, explain and proxy, so what `apply`
loads is always what `compile` shows with the same flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from svc2rules.backends import DEFAULT_CHAIN_PREFIX, DEFAULT_TABLE, Comments, RenderOptions, get_backend
from svc2rules.cli.common import choose_backend, node_config
from svc2rules.config import ProxyConfig

CommentsOpt = Annotated[
    Comments, typer.Option("--comments", help="Rule comments: auto (kube-proxy's), always or never.")
]
ChainPrefixOpt = Annotated[str, typer.Option("--chain-prefix", help="Prefix of our iptables chains.")]
TableOpt = Annotated[str, typer.Option("--table", help="Name of our nftables table.")]
JumpsOpt = Annotated[
    bool, typer.Option("--jumps/--no-jumps", help="Include the jumps from the built-in chains.")
]
ClusterDomainOpt = Annotated[
    str | None, typer.Option("--cluster-domain", help="dns backend: the cluster domain (cluster.local).")
]
DnsFormatOpt = Annotated[
    str | None, typer.Option("--dns-format", help="dns backend: 'zone' (RFC 1035 zone file) or 'hosts'.")
]
DnsServerIPOpt = Annotated[
    str | None,
    typer.Option("--dns-server-ip", help="dns backend: NS glue address (default: kube-dns ClusterIP)."),
]
IpvsSchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--ipvs-scheduler",
        help="ipvs backend: scheduler (rr, lc, dh, sh, sed, nq, wrr, wlc, lblc, lblcr, mh); "
        "overrides the config file's ipvs.scheduler.",
    ),
]
NftLayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--nft-layout",
        help="nftables backend: 'grouped' (default; object count independent of the number of "
        "Services) or 'kube-proxy' (kube-proxy's per-Service chains).",
    ),
]


@dataclass(frozen=True, slots=True)
class NodeFlags:
    """The node facts a command was given (None / empty: not given)."""

    config_path: Path | None = None
    node_name: str | None = None
    node_ip: list[str] | None = None
    node_zone: str | None = None
    cluster_cidr: list[str] | None = None
    masquerade_all: bool | None = None


# The backend that reads each backend-specific flag: a flag given for another backend than the
# one chosen is still checked, so a typo never waits for the day that backend is used.
FLAG_OWNERS = {
    "nft_layout": "nftables",
    "ipvs_scheduler": "ipvs",
    "cluster_domain": "dns",
    "dns_format": "dns",
    "dns_server_ip": "dns",
}


@dataclass(frozen=True, slots=True)
class RenderFlags:
    """The render flags a command was given; backend-specific ones are read by the backend."""

    comments: Comments = Comments.AUTO
    chain_prefix: str = DEFAULT_CHAIN_PREFIX
    table: str = DEFAULT_TABLE
    jumps: bool = True
    nft_layout: str | None = None
    ipvs_scheduler: str | None = None
    cluster_domain: str | None = None
    dns_format: str | None = None
    dns_server_ip: str | None = None

    def backend_flags(self) -> dict[str, str]:
        given = {
            "nft_layout": self.nft_layout,
            "ipvs_scheduler": self.ipvs_scheduler,
            "cluster_domain": self.cluster_domain,
            "dns_format": self.dns_format,
            "dns_server_ip": self.dns_server_ip,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True, slots=True)
class CommandOptions:
    config: ProxyConfig
    backend: str
    render: RenderOptions[Any]


def build_options(node: NodeFlags, render: RenderFlags, backend: str | None) -> CommandOptions:
    """Node config (file, then flags), the backend (flag, then the file's mode, then iptables)
    and the render options, with the backend's own flags read into its typed options."""
    config, mode = node_config(
        node.config_path,
        node_name=node.node_name,
        node_ip=node.node_ip,
        node_zone=node.node_zone,
        cluster_cidr=node.cluster_cidr,
        masquerade_all=node.masquerade_all,
    )
    name = choose_backend(backend, mode)
    flags = render.backend_flags()
    for owner in sorted({FLAG_OWNERS[flag] for flag in flags} - {name}):
        get_backend(owner).options(flags)
    options: RenderOptions[Any] = RenderOptions(
        comments=render.comments,
        chain_prefix=render.chain_prefix,
        table=render.table,
        jumps=render.jumps,
        backend=get_backend(name).options(flags),
    )
    return CommandOptions(config, name, options)
