"""The userspace proxy mode (kube-proxy's original proxier).

Each Service port gets a port on the node (`ports`, `layout`); the nat rules rendered by the
`userspace` backend REDIRECT the Service's addresses to it; `svc2rules proxy` (`server`,
`tcp`, `udp`, `balancer`, `runner`) accepts there and relays to an endpoint.
"""
