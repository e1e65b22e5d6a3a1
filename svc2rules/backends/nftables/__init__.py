"""nftables backend: one `nft -f` transaction that replaces our own table whole."""

from svc2rules.backends import Backend, DataplaneFacts
from svc2rules.backends.nftables.apply import NftablesApplier
from svc2rules.backends.nftables.options import NftablesOptions, nftables_options
from svc2rules.backends.nftables.render import FAMILY, render_nftables

BACKEND: Backend[NftablesOptions] = Backend(
    name="nftables",
    summary="nft -f script (kube-proxy semantics, O(1) dispatch, fixed object count); load with nft -f",
    families=frozenset({FAMILY}),
    render=render_nftables,
    options=nftables_options,
    applier=NftablesApplier,
    facts=DataplaneFacts(
        kube_proxy_semantics=True,
        nftables_semantics=True,
        affinity_scope="per frontend (a client's ClusterIP and NodePort choices are independent)",
    ),
)
