"""The `svc2rules proxy` runtime: kube-proxy's original (userspace) proxier.

Each Service port gets a port on the node and the nat rules REDIRECT the Service's addresses
to it: both are the `userspace` backend's (svc2rules.backends.userspace: layout, ports,
addressing, rules and their applier), which this runtime imports and never the reverse.
`svc2rules proxy` (`server`, `tcp`, `udp`, `balancer`, `runner`) accepts there and relays to
an endpoint.
"""
