"""The nftables backend's own options (--nft-layout)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from svc2rules.errors import UsageError

# grouped: fixed number of objects (the default, see grouped.py); kube-proxy: per-Service chains.
LAYOUT_NAMES = ("grouped", "kube-proxy")
DEFAULT_LAYOUT = "grouped"


@dataclass(frozen=True, slots=True)
class NftablesOptions:
    layout: str = DEFAULT_LAYOUT


def nftables_options(flags: Mapping[str, str]) -> NftablesOptions:
    layout = flags.get("nft_layout", DEFAULT_LAYOUT)
    if layout not in LAYOUT_NAMES:
        raise UsageError(f"unknown nftables layout {layout!r} (choose from: {', '.join(LAYOUT_NAMES)})")
    return NftablesOptions(layout)
