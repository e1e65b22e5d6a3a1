"""The kube-proxy-compatible nftables layout (`nft_layout: kube-proxy`): per-Service chains.

Chains and sets are named as kube-proxy's nftables mode names them (`service-`, `local-`,
`external-`, `firewall-`, `endpoint-` chains and `affinity-` sets, `hashAndTruncate` of
`ns/svc/proto/port[__ip/port]`), and the rules inside them follow kube-proxy's *iptables* mode,
like every svc2rules backend: masquerade in the internal chain, hairpin in each endpoint chain,
affinity per endpoint (so it is shared by every frontend of a service port, exactly as iptables'
`recent` lists), source ranges only when the service has endpoints.

Dispatch (verdict maps), masquerading and the filter verdicts are the grouped layout's. This
layout is for reading and comparing with kube-proxy; it loads in time proportional to the number
of chains (minutes at 10k Services, see the research notes), which is why it is not the default.
"""

from __future__ import annotations

import base64
import hashlib

from svc2rules.backends.nftables.grouped import GroupedLayout
from svc2rules.backends.nftables.objects import Collection
from svc2rules.ir import Endpoint, ServicePort
from svc2rules.syntax.nftables import Chain, Set

NAME_MAX = 240  # kube-proxy truncates object names here (nft allows 256)


def hash_and_truncate(text: str) -> str:
    """kube-proxy's hashAndTruncate: 8 base32 characters of sha256, '-', the text."""
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]
    name = f"{digest}-{text}"
    return name if len(name) <= NAME_MAX else name[: NAME_MAX - 3] + "..."


class KubeProxyLayout(GroupedLayout):
    """Same decisions as the grouped layout, one chain per service port and endpoint."""

    def build(self) -> list[str]:
        self.per_service: list[Chain] = []
        self.affinity_sets: list[Collection] = []
        return super().build()

    # -- names --------------------------------------------------------------------------------

    @staticmethod
    def _base(sp: ServicePort) -> str:
        return f"{sp.key.namespace}/{sp.key.name}/{sp.protocol.keyword}/{sp.key.port_name}"

    def _chain_name(self, kind: str, sp: ServicePort) -> str:
        return f"{kind}-{hash_and_truncate(self._base(sp))}"

    def _endpoint_base(self, sp: ServicePort, ep: Endpoint) -> str:
        return hash_and_truncate(f"{self._base(sp)}__{ep.ip}/{ep.port}")

    # -- per service port ---------------------------------------------------------------------

    def _service_port(self, sp: ServicePort) -> None:
        proto = sp.protocol.keyword
        name = str(sp.key)
        nft = self.nft
        rc = self._rule_comment
        no_endpoints = "drop" if sp.has_endpoints else "goto reject-chain"
        comment = self._comment(sp)
        cluster_chain = self._chain_name("service", sp)
        local_chain = self._chain_name("local", sp)
        internal_chain = local_chain if sp.internal_policy_local else cluster_chain
        external_chain = self._chain_name("external", sp)
        firewall_chain = self._chain_name("firewall", sp)

        key = f"{sp.cluster_ip} . {proto} . {sp.port}"
        if sp.has_internal_endpoints:
            self._claim(self.service_ips, key, f"jump {internal_chain}", sp)
        else:
            self.no_endpoint_cluster_ips.add(key, no_endpoints, comment)
        for ip in sp.external_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if sp.has_endpoints:
                self._claim(self.service_ips, key, f"jump {external_chain}", sp)
            if not sp.has_external_endpoints:
                self.no_endpoint_external_ips.add(key, no_endpoints, comment)
        lb_chain = firewall_chain if sp.uses_firewall else external_chain
        for ip in sp.load_balancer_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if sp.has_endpoints:
                self._claim(self.service_ips, key, f"jump {lb_chain}", sp)
            if sp.uses_firewall:
                self.firewall_ips.add(key, None, comment)
            if not sp.has_external_endpoints:
                self.no_endpoint_external_ips.add(key, no_endpoints, comment)
        if sp.node_port:
            key = f"{proto} . {sp.node_port}"
            if sp.has_endpoints:
                self._claim(self.service_nodeports, key, f"jump {external_chain}", sp)
            if not sp.has_external_endpoints:
                self.no_endpoint_nodeports.add(key, no_endpoints, comment)

        chains: dict[str, Chain] = {}

        def chain(chain_name: str) -> Chain:
            if chain_name not in chains:
                chains[chain_name] = Chain(chain_name, name)
            return chains[chain_name]

        if sp.has_internal_endpoints:
            dst = f"{nft.daddr} {sp.cluster_ip} {proto} dport {sp.port}"
            if self.masquerade_all:
                chain(internal_chain).add(f"{dst} jump mark-for-masquerade", rc(f"{name} cluster IP"))
            elif self.cluster_cidr:
                chain(internal_chain).add(
                    f"{dst} {nft.saddr} != {self.cluster_cidr} jump mark-for-masquerade",
                    rc(f"{name} cluster IP"),
                )
        if sp.uses_external_chain:
            ext = chain(external_chain)
            if not sp.external_policy_local:
                ext.add(
                    "jump mark-for-masquerade", rc(f"masquerade traffic for {name} external destinations")
                )
            else:
                if self.cluster_cidr:
                    ext.add(f"{nft.saddr} {self.cluster_cidr} goto {cluster_chain}", rc("pod traffic"))
                ext.add("fib saddr type local jump mark-for-masquerade", rc("masquerade LOCAL traffic"))
                ext.add(f"fib saddr type local goto {cluster_chain}", rc("route LOCAL traffic"))
            if sp.has_external_endpoints:
                ext.add(f"goto {local_chain if sp.external_policy_local else cluster_chain}")
        if sp.uses_firewall:
            allowed = ", ".join(str(n) for n in self._allowed_sources(sp))
            fw = chain(firewall_chain)
            if allowed:
                fw.add(f"{nft.saddr} {{ {allowed} }} goto {external_chain}", rc(f"{name} loadbalancer IP"))
        if sp.cluster_endpoints and sp.uses_cluster_endpoints:
            self._dispatch(sp, chain(cluster_chain), sp.cluster_endpoints)
        if sp.local_endpoints and sp.uses_local_endpoints:
            self._dispatch(sp, chain(local_chain), sp.local_endpoints)
        for ep in sp.reachable_endpoints:
            base = self._endpoint_base(sp, ep)
            ep_chain = chain(f"endpoint-{base}")
            ep_chain.add(f"{nft.saddr} {ep.ip} jump mark-for-masquerade")
            if sp.affinity_timeout:
                self.affinity_sets.append(
                    Collection(
                        Set(
                            f"affinity-{base}",
                            type=nft.addr_type,
                            flags=("dynamic", "timeout"),
                            timeout=sp.affinity_timeout,
                            comment=name,
                        )
                    )
                )
                ep_chain.add(f"update @affinity-{base} {{ {nft.saddr} }}")
            ep_chain.add(f"meta l4proto {proto} dnat to {nft.address_and_port(ep.ip, ep.port)}")
        self.per_service.extend(chains.values())

    def _dispatch(self, sp: ServicePort, chain: Chain, endpoints: tuple[Endpoint, ...]) -> None:
        bases = [self._endpoint_base(sp, ep) for ep in endpoints]
        if sp.affinity_timeout:
            for base in bases:
                chain.add(f"{self.nft.saddr} @affinity-{base} goto endpoint-{base}")
        if len(bases) == 1:
            chain.add(f"goto endpoint-{bases[0]}")
            return
        targets = ", ".join(f"{i} : goto endpoint-{base}" for i, base in enumerate(bases))
        chain.add(f"numgen random mod {len(bases)} vmap {{ {targets} }}")

    # -- fixed part ---------------------------------------------------------------------------

    def _collections(self) -> list[Collection]:
        out = [self.service_ips, self.service_nodeports]
        if self.node_port_ips:
            out.append(self.nodeport_ips)
        return [*out, *self.affinity_sets, *self._verdict_collections()]

    def _verdict_collections(self) -> list[Collection]:
        return [
            self.no_endpoint_cluster_ips,
            self.no_endpoint_external_ips,
            self.no_endpoint_nodeports,
            self.firewall_ips,
        ]

    def _postrouting_rules(self, chain: Chain) -> None:
        """Hairpin is marked in each endpoint chain, as kube-proxy does."""

    def _layout_chains(self) -> None:
        for chain in self.per_service:
            self.table.chain(chain)
