"""Real-kernel dataplane lab: throw-away network namespaces that prove rules with real packets."""
