"""Pydantic models of the Kubernetes objects svc2rules reads (input schema only)."""

from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import EndpointSlice
from svc2rules.model.service import Service

__all__ = ["EndpointSlice", "Endpoints", "Service"]
