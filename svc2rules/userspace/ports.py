"""Kept for importers not moved yet: the port assignment is the userspace backend's
(svc2rules.backends.userspace.ports); the runtime imports it from there."""

from svc2rules.backends.userspace.ports import DEFAULT_PORT_RANGE, PortRange, assign_ports

__all__ = ["DEFAULT_PORT_RANGE", "PortRange", "assign_ports"]
