"""nftables backend: one `nft -f` transaction that replaces our own table whole."""

from svc2rules.backends import Backend
from svc2rules.backends.nftables.apply import NftablesApplier
from svc2rules.backends.nftables.render import render_nftables

BACKEND = Backend(
    name="nftables",
    summary="nft -f script (kube-proxy semantics, O(1) dispatch, fixed object count); load with nft -f",
    render=render_nftables,
    applier=NftablesApplier,
)
