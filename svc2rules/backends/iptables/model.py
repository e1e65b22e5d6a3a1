"""What the iptables applier owns and remembers, as plain data.

* `Desired`: the tables a plan wants (our chains -> rules, jumps from the built-in chains).
* `IptablesState`: what the state file keeps of the last write. Chains are kept as their
  rules joined by newlines; the chains a Service owns live in that Service's record (`owned`),
  the shared and fixed ones in `tables`, so a one-Service change reads a few records
  instead of every chain.
* `Record`: one Service's record: its own chains, its UDP ports, its counts.
"""

from __future__ import annotations

import hashlib
import marshal
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from svc2rules.backends import RenderOptions
from svc2rules.backends.applier import BaseState, Change
from svc2rules.backends.iptables.names import ChainNames
from svc2rules.backends.iptables.render import FAMILY
from svc2rules.backends.iptables.services import ServicePart
from svc2rules.compile.identity import code_identity
from svc2rules.config import ProxyConfig
from svc2rules.host.conntrack import udp_facts_of
from svc2rules.ir import Plan, ServicePort
from svc2rules.syntax.xtables import comment

# The tables we write, in the order a write plans them (nat, the big one, first: see ops.py).
TABLES = ("nat", "filter")
_GENERATION = re.compile(r"svc2rules generation ([A-Za-z0-9-]+)")

Chains = dict[str, list[str]]  # chain -> its rules' specs
StoredChains = dict[str, str]  # chain -> its rules' specs, one per line (the state's form)


def marker_rule(generation: str) -> str:
    """The one rule of the marker chain: the generation the kernel carries."""
    return f"{comment(f'svc2rules generation {generation}')} -j RETURN"


def generation_of(specs: Iterable[str]) -> str | None:
    """The generation the marker chain's rules name, if any."""
    match = _GENERATION.search(" ".join(specs))
    return match.group(1) if match else None


@dataclass
class Desired:
    plan: Plan
    options: RenderOptions[None]
    names: ChainNames
    tables: dict[str, Chains]
    jumps: dict[str, list[tuple[str, str]]]
    udp: dict[str, dict[str, Any]]
    # With the Services' fingerprints: the state entries the next run plans per Service from,
    # and the chains the Services own (the state keeps them in each Service's record).
    by_service: dict[str, Any] | None = None
    owned_chains: dict[str, set[str]] = field(default_factory=dict)
    _origins: dict[str, str] | None = None

    def origins(self) -> dict[str, str]:
        """Chain -> `ns/svc:port`, computed only when an error needs it."""
        if self._origins is None:
            n = self.names
            out: dict[str, str] = {}
            for sp in self.plan.for_family(FAMILY):
                key = str(sp.key)
                for chain in (n.cluster_policy(sp), n.local_policy(sp), n.external(sp), n.firewall_chain(sp)):
                    out[chain] = key
                for ep in sp.reachable_endpoints:
                    out[n.endpoint(sp, ep)] = key
            self._origins = out
        return self._origins


class IptablesState(BaseState, total=False):
    prefix: str
    tables: dict[str, StoredChains]  # table -> chain -> its rules, one per line
    jumps: dict[str, list[list[str]]]  # table -> [built-in chain, spec]
    jumps_live: dict[str, dict[str, list[str]]]  # read back: table -> built-in chain -> specs
    groups: dict[str, str]
    ctx: str
    totals: dict[str, int]
    segments: dict[str, Any]
    owned: dict[str, Any]


@dataclass
class IptablesChange(Change[Desired, IptablesState]):
    # The tables as the state had them (validation checks references against them).
    old_tables: dict[str, StoredChains] = field(default_factory=dict)
    # A full load: the built-in chains are created first (a section opening with `-S` cannot).
    prep: bool = False


def sysctls(config: ProxyConfig, node_ports: int) -> dict[str, str]:
    wanted = {FAMILY.forwarding_sysctl: "1"}
    if config.localhost_nodeports and node_ports:
        wanted[f"{FAMILY.sysctl_prefix}conf.all.route_localnet"] = "1"
    return wanted


def ours(ports: Iterable[ServicePort]) -> tuple[ServicePort, ...]:
    """The ports of the family this backend renders."""
    return tuple(sp for sp in ports if sp.family == FAMILY)


def endpoint_comments(total_endpoints: int, options: RenderOptions[None]) -> bool:
    """render.endpoint_comments, from the plan's total of endpoints of our family."""
    return options.comments.per_endpoint(total_endpoints)


def totals(ports: Iterable[ServicePort]) -> dict[str, int]:
    ports = tuple(ports)
    return {
        "endpoints": sum(len(sp.reachable_endpoints) for sp in ours(ports)),
        "nodeports": sum(1 for sp in ports if sp.node_port),
    }


def service_context(config: ProxyConfig, options: RenderOptions[None], with_endpoint_comments: bool) -> str:
    """Everything every Service's rules depend on besides its own objects: a Service's part of
    the state is reused only while this is unchanged."""
    parts = (
        code_identity(),
        config.model_dump_json(),
        options.chain_prefix,
        options.comments,
        options.jumps,
        options.backend,
        with_endpoint_comments,
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Record:
    """What one Service has loaded, as the state keeps it: its own chains, its UDP ports (for
    conntrack cleanup) and its counts (endpoint comments, route_localnet)."""

    chains: dict[str, StoredChains]  # table -> chain -> rules
    udp: tuple[str, ...]
    endpoints: int
    nodeports: int

    @classmethod
    def of(cls, part: ServicePart, ports: Sequence[ServicePort]) -> Record:
        counts = totals(ports)
        chains = {t: {c: "\n".join(r) for c, r in own.items()} for t, own in part.chains.items()}
        return cls(chains, tuple(udp_facts_of(ours(ports))), counts["endpoints"], counts["nodeports"])

    def write(self) -> bytes:
        return marshal.dumps((self.chains, self.udp, self.endpoints, self.nodeports))

    @classmethod
    def read(cls, data: Any) -> Record | None:
        if not isinstance(data, bytes):
            return None
        try:
            chains, udp, endpoints, nodeports = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None
        return cls(chains, tuple(udp), endpoints, nodeports)


def by_service_state(
    plan: Plan, options: RenderOptions[None], services: dict[str, str], parts: dict[str, ServicePart]
) -> dict[str, Any]:
    """The state entries a Service-by-Service plan starts from: fingerprints, the context,
    totals, each Service's share of the shared chains (`segments`) and its record."""
    counts = totals(plan.service_ports)
    segments: dict[str, dict[str, dict[str, int]]] = {t: {} for t in TABLES}
    for name, part in parts.items():
        for table, shared in part.shared.items():
            for chain, rules in shared.items():
                segments[table].setdefault(chain, {})[name] = len(rules)
    by_name: dict[str, list[ServicePort]] = {}
    for sp in plan.service_ports:
        by_name.setdefault(f"{sp.key.namespace}/{sp.key.name}", []).append(sp)
    # Every Service has a record, even one with no port of our family (headless, ExternalName).
    owned = {
        name: Record.of(parts.get(name) or ServicePart(), by_name.get(name, [])).write() for name in services
    }
    return {
        "groups": services,
        "ctx": service_context(plan.config, options, endpoint_comments(counts["endpoints"], options)),
        "totals": counts,
        "segments": segments,
        "owned": owned,
    }


def flat(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A state whose tables hold every chain (the Services' own chains put back in)."""
    if old is None or not isinstance(old.get("owned"), dict):
        return None if old is None else dict(old)
    tables = {t: dict(chains) for t, chains in old.get("tables", {}).items()}
    for data in old["owned"].values():
        record = Record.read(data)
        if record is None:
            continue
        for table, chains in record.chains.items():
            tables.setdefault(table, {}).update(chains)
    return {**old, "tables": tables}
