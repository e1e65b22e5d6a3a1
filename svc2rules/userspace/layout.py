"""Kept for importers not moved yet: the listener layout is the userspace backend's
(svc2rules.backends.userspace.layout); the runtime imports it from there."""

from svc2rules.backends.userspace.layout import Layout, Listener, Pool, build_layout, proxied

__all__ = ["Layout", "Listener", "Pool", "build_layout", "proxied"]
