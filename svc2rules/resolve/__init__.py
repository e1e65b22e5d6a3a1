"""Resolve validated Kubernetes objects into the intermediate model (pure functions)."""

from svc2rules.resolve.plan import Resolution, resolve

__all__ = ["Resolution", "resolve"]
