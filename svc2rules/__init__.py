"""svc2rules: compile Kubernetes Services into host load-balancing rules."""

__version__ = "0.1.0"
