"""The host layer: the only code that touches this machine.

The runner (the one place that starts processes, and an in-memory fake for tests), the lock,
the state store, sysctls and privileges, and stale conntrack cleanup. Backends' appliers and
the apply engine reach the host only through these.
"""
