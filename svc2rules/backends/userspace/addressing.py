"""Where the proxy listens: the settings the rules and the running proxy must agree on."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from svc2rules.backends.userspace.layout import FAMILIES
from svc2rules.backends.userspace.ports import DEFAULT_PORT_RANGE, PortRange
from svc2rules.errors import UsageError
from svc2rules.family import IPFamily

ANY_ADDRESS = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class Addressing:
    port_range: PortRange
    bind: str = ANY_ADDRESS

    @property
    def redirects(self) -> bool:
        """Listening on every address, REDIRECT (to the address the packet arrived on) reaches
        the proxy; bound to one address, the rules must DNAT to that address instead."""
        return self.bind == ANY_ADDRESS

    @classmethod
    def create(cls, port_range: str | PortRange = DEFAULT_PORT_RANGE, bind: str = ANY_ADDRESS) -> Addressing:
        ports = port_range if isinstance(port_range, PortRange) else PortRange.parse(port_range)
        served = " or ".join(sorted(FAMILIES))
        try:
            address = str(ipaddress.ip_address(bind.strip()))
        except ValueError:
            raise UsageError(f"bind address must be an {served} address, got {bind!r}") from None
        if IPFamily.of(address) not in FAMILIES:
            raise UsageError(f"the userspace proxy serves {served} only, got bind address {bind!r}")
        return cls(ports, address)


def addressing_options(flags: Mapping[str, str]) -> Addressing:
    """The userspace backend's options from its flags (`port_range`, `bind`; the proxy's
    --port-range and --bind)."""
    return Addressing.create(flags.get("port_range", DEFAULT_PORT_RANGE), flags.get("bind", ANY_ADDRESS))
