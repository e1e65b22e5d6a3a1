"""The ipvs backend's own options (--ipvs-scheduler)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from svc2rules.errors import UsageError
from svc2rules.model.service import IPVS_SCHEDULERS


@dataclass(frozen=True, slots=True)
class IpvsOptions:
    # None: the config file's ipvs.scheduler, else rr.
    scheduler: str | None = None


def check_scheduler(name: str, where: str) -> str:
    if name not in IPVS_SCHEDULERS:
        raise UsageError(
            f"{where}: unknown IPVS scheduler {name!r} (choose from: {', '.join(IPVS_SCHEDULERS)})"
        )
    return name


def ipvs_options(flags: Mapping[str, str]) -> IpvsOptions:
    scheduler = flags.get("ipvs_scheduler")
    return IpvsOptions(check_scheduler(scheduler, "--ipvs-scheduler") if scheduler else None)
