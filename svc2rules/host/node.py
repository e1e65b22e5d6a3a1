"""This host's node facts, found as kube-proxy and the kubelet find them when not told.

The node name is the hostname, trimmed and lower-cased (kube-proxy's GetHostname). The node IP
of a family is the primary address of the interface that carries that family's default route
(the kubelet's choice of node address when none is configured): the route's preferred source
when it names one, else the interface's first global address that is neither tentative nor
deprecated.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from svc2rules.errors import ApplyError
from svc2rules.family import IPFamily
from svc2rules.host.runner import Runner
from svc2rules.syntax import iproute


@dataclass(frozen=True, slots=True)
class PrimaryAddress:
    family: IPFamily
    address: str
    interface: str


def host_name() -> str | None:
    """This host's name as kube-proxy takes it for the node name (None: the host has none)."""
    return socket.gethostname().strip().lower() or None


def primary_address(family: IPFamily, runner: Runner) -> PrimaryAddress | None:
    """The address of `family` on the interface of this host's default route, or None when
    there is no such route (or no usable address on its interface, or no `ip` tool)."""
    routes = _ip_json(runner, family, "route", "show", "default")
    usable = [r for r in routes if isinstance(r, dict) and r.get("dev")]
    if not usable:
        return None
    # The route the kernel uses: the lowest metric (absent means 0).
    route = min(usable, key=lambda r: int(r.get("metric", 0)))
    interface = str(route["dev"])
    if route.get("prefsrc"):
        return PrimaryAddress(family, str(route["prefsrc"]), interface)
    for link in _ip_json(runner, family, "addr", "show", "dev", interface, "scope", "global"):
        for info in link.get("addr_info", ()) if isinstance(link, dict) else ():
            if info.get("local") and not info.get("tentative") and not info.get("deprecated"):
                return PrimaryAddress(family, str(info["local"]), interface)
    return None


def _ip_json(runner: Runner, family: IPFamily, *args: str) -> list[Any]:
    try:
        result = runner.run([iproute.COMMAND, "-j", family.iproute_flag, *args])
    except ApplyError:  # no `ip` on this host: no address we can tell
        return []
    if not result.ok:
        return []
    try:
        parsed = json.loads(result.stdout or "[]")
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []
