"""The one options builder: flags (and a kube-proxy config file) -> node config, backend and
render options, the same for compile, apply, diff, cleanup, explain and proxy, so what `apply`
loads is always what `compile` shows with the same flags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from svc2rules.backends import (
    DEFAULT_CHAIN_PREFIX,
    DEFAULT_TABLE,
    Comments,
    RenderOptions,
    check_chain_prefix,
    get_backend,
)
from svc2rules.cli.common import (
    choices,
    choose_backend,
    comma_list,
    completes,
    err,
    missing_node_facts,
    node_config,
)
from svc2rules.config import ProxyConfig
from svc2rules.errors import UsageError, quote_value
from svc2rules.family import FAMILIES

# The choices of the backend-specific flags, for --help (each backend's options reader checks
# the value; tests/unit/test_cli.py checks that these lists are the backends' own).
IPVS_SCHEDULER_CHOICES = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")
NFT_LAYOUT_CHOICES = ("grouped", "kube-proxy")
DNS_FORMAT_CHOICES = ("zone", "hosts")

CommentsOpt = Annotated[
    Comments,
    typer.Option(
        "--comments",
        metavar=choices([c.value for c in Comments]),
        help="Rule comments: auto (kube-proxy's: none per endpoint above 1000 endpoints), always or never.",
    ),
]
ChainPrefixOpt = Annotated[
    str,
    typer.Option(
        "--chain-prefix",
        metavar="PREFIX",
        help="Prefix of our iptables chains and ipsets (1-8 letters, digits or '-').",
    ),
]
TableOpt = Annotated[str, typer.Option("--table", metavar="NAME", help="Name of our nftables table.")]
JumpsOpt = Annotated[
    bool, typer.Option("--jumps/--no-jumps", help="Include the jumps from the built-in chains.")
]
ClusterDomainOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster-domain", metavar="DOMAIN", help="dns backend: the cluster domain (cluster.local)."
    ),
]
DnsFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-format",
        metavar=choices(DNS_FORMAT_CHOICES),
        autocompletion=completes(DNS_FORMAT_CHOICES),
        help="dns backend: an RFC 1035 zone file (default) or /etc/hosts lines.",
    ),
]
DnsServerIPOpt = Annotated[
    str | None,
    typer.Option(
        "--dns-server-ip", metavar="IP", help="dns backend: NS glue address (default: kube-dns ClusterIP)."
    ),
]
IpvsSchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--ipvs-scheduler",
        metavar=choices(IPVS_SCHEDULER_CHOICES),
        autocompletion=completes(IPVS_SCHEDULER_CHOICES),
        help="ipvs backend: the scheduler (default rr); overrides the config file's ipvs.scheduler.",
    ),
]
NftLayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--nft-layout",
        metavar=choices(NFT_LAYOUT_CHOICES),
        autocompletion=completes(NFT_LAYOUT_CHOICES),
        help="nftables backend: 'grouped' (default; object count independent of the number of "
        "Services) or 'kube-proxy' (kube-proxy's per-Service chains).",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Allow a --chain-prefix or --table that is another owner's (KUBE: kube-proxy's chains; "
        "kube-proxy, filter, nat...: kube-proxy's or iptables-nft's tables), whose rules svc2rules "
        "would then replace or remove.",
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
    node_port_addresses: list[str] | None = None
    strict_config: bool = False
    service_cidr: list[str] | None = None
    conntrack_tcp_be_liberal: bool | None = None


class NodeFacts(Enum):
    """Where the node facts no flag or config gave come from."""

    # compile, explain: nowhere (the output depends on the command line alone); a warning
    # names what each missing fact changes.
    WARN = "warn"
    # apply, diff: this host, as kube-proxy finds them (said on stderr).
    HOST = "host"
    # cleanup: no rules are compiled.
    UNUSED = "unused"


class ForeignNames(Enum):
    """What to do with a --chain-prefix or --table that belongs to kube-proxy or iptables-nft."""

    WARN = "warn"  # compile: the output would replace them once loaded
    REFUSE = "refuse"  # apply, cleanup without --force
    ALLOW = "allow"  # --force, or a command that only reads (diff)


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


# Backends whose output does not depend on the node: DNS records are the same on every node.
NODE_INDEPENDENT_BACKENDS = frozenset({"dns"})


@dataclass(frozen=True, slots=True)
class CommandOptions:
    config: ProxyConfig
    backend: str
    render: RenderOptions[Any]
    # What the rules lose for the node facts nobody gave: said once the input has compiled (an
    # invalid input gets its errors alone).
    missing_facts: tuple[str, ...] = ()

    def warn_missing_facts(self) -> None:
        for line in self.missing_facts:
            err(f"warning: {line}")


def build_options(
    node: NodeFlags,
    render: RenderFlags,
    backend: str | None,
    *,
    facts: NodeFacts = NodeFacts.WARN,
    foreign: ForeignNames = ForeignNames.WARN,
) -> CommandOptions:
    """Node config (file, then flags, then `facts`), the backend (flag, then the file's mode,
    then iptables) and the render options, with the backend's own flags read into its typed
    options. Every flag is checked before anything is said about the result."""
    notes: list[str] = []
    config, mode = node_config(
        node.config_path,
        node_name=node.node_name,
        node_ip=node.node_ip,
        node_zone=node.node_zone,
        cluster_cidr=node.cluster_cidr,
        masquerade_all=node.masquerade_all,
        node_port_addresses=node.node_port_addresses,
        extra={
            "service_cidrs": comma_list(node.service_cidr),
            "conntrack_tcp_be_liberal": node.conntrack_tcp_be_liberal,
        },
        strict=node.strict_config,
        warn_missing=False,
        notes=notes,
    )
    _check_names(render, foreign, notes)
    name = choose_backend(backend, mode)
    if name == "ipvs" and facts is not NodeFacts.UNUSED:
        # As kube-proxy says when it starts in ipvs mode (not when it only cleans up).
        from svc2rules.backends.ipvs.support import DEPRECATION

        notes.append(f"warning: {DEPRECATION}")
    flags = render.backend_flags()
    _check_backend_flags(flags)
    options: RenderOptions[Any] = RenderOptions(
        comments=render.comments,
        chain_prefix=render.chain_prefix,
        table=render.table,
        jumps=render.jumps,
        backend=get_backend(name).options(flags),
    )
    if facts is NodeFacts.HOST:
        config = with_host_facts(config, notes)
    for line in notes:
        err(line)
    missing = () if facts is NodeFacts.UNUSED else tuple(missing_node_facts(config))
    return CommandOptions(config, name, options, missing)


def _check_backend_flags(flags: dict[str, str]) -> None:
    """Each backend-specific flag read alone by its backend (whichever backend is chosen), so
    an error can name the flag as typed even when the backend's message does not."""
    for flag, value in sorted(flags.items()):
        try:
            get_backend(FLAG_OWNERS[flag]).options({flag: value})
        except UsageError as exc:
            typed = "--" + flag.replace("_", "-")
            if str(exc).startswith(typed):
                raise
            raise UsageError(f"{typed}: {exc}") from None


# nft table names: letters, digits and _ . / - (nft's identifier), at most 255 characters.
_TABLE_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_./-]{0,254}")
# Tables svc2rules must never replace: kube-proxy's, and the ones iptables-nft keeps the
# iptables rules in (replacing `table ip nat` would wipe every iptables nat rule).
FOREIGN_TABLES = {
    "kube-proxy": "kube-proxy's nftables table",
    **{table: "iptables-nft's table" for table in ("filter", "nat", "mangle", "raw", "security")},
}


def _check_names(render: RenderFlags, foreign: ForeignNames, notes: list[str]) -> None:
    check_chain_prefix(render.chain_prefix)
    if not _TABLE_NAME.fullmatch(render.table):
        raise UsageError(
            f"--table: invalid table name {quote_value(render.table)}: letters, digits, '_', '.', '/' "
            "and '-', starting with a letter, '_' or '.'"
        )
    clashes = []
    if render.chain_prefix == "KUBE" or render.chain_prefix.startswith("KUBE-"):
        clashes.append(
            f"--chain-prefix {render.chain_prefix}: KUBE-* are kube-proxy's (and the kubelet's) chains"
        )
    if render.table in FOREIGN_TABLES:
        clashes.append(f"--table {render.table}: {FOREIGN_TABLES[render.table]}")
    for clash in clashes:
        if foreign is ForeignNames.REFUSE:
            raise UsageError(
                f"{clash}; svc2rules would replace or remove its rules (--force to do it anyway)"
            )
        if foreign is ForeignNames.WARN:
            notes.append(f"warning: {clash}; loading this output replaces them")


def with_host_facts(config: ProxyConfig, notes: list[str]) -> ProxyConfig:
    """The node name and IPs nobody gave, from this host as kube-proxy would take them; each
    one found is said in `notes`."""
    from svc2rules.host.node import host_name, primary_address
    from svc2rules.host.runner import Runner
    from svc2rules.host.system import require_net_admin

    # A command that cannot run here says only that (as it would without this lookup).
    require_net_admin()
    update: dict[str, Any] = {}
    if config.node_name is None and (name := host_name()) is not None:
        update["node_name"] = name
        notes.append(f"node name: {name} (this host's name; --node-name sets another)")
    if not config.node_ips:
        runner = Runner()
        found = [address for family in FAMILIES if (address := primary_address(family, runner))]
        for address in found:
            notes.append(
                f"node IP: {address.address} ({address.family.value} address of {address.interface}, "
                "the default route's interface; --node-ip sets another)"
            )
        if found:
            update["node_ips"] = tuple(address.address for address in found)
    if not update:
        return config
    return ProxyConfig.model_validate({**config.model_dump(), **update})
