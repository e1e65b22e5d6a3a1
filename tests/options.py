"""Render options for a backend as a test spells them: common options plus the backend's own
flags (`nft_layout`, `ipvs_scheduler`, `dns_format`...), read by the backend as the CLI's are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from svc2rules.backends import RenderOptions, get_backend


def render_options(backend: str, extra: Mapping[str, str] | None = None, **common: Any) -> RenderOptions[Any]:
    return RenderOptions(backend=get_backend(backend).options(dict(extra or {})), **common)
