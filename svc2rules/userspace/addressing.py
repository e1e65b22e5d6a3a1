"""Kept for importers not moved yet: where the proxy listens is the userspace backend's
(svc2rules.backends.userspace.addressing); the runtime imports it from there."""

from svc2rules.backends.userspace.addressing import ANY_ADDRESS, Addressing, addressing_options

__all__ = ["ANY_ADDRESS", "Addressing", "addressing_options"]
