"""userspace backend: the nat rules that send Service traffic to `svc2rules proxy`."""

from svc2rules.backends import Backend
from svc2rules.backends.userspace.render import render_userspace
from svc2rules.family import IPFamily
from svc2rules.userspace.addressing import Addressing, addressing_options

BACKEND: Backend[Addressing] = Backend(
    name="userspace",
    summary="iptables-restore script REDIRECTing Service addresses to `svc2rules proxy` (kube-proxy userspace mode)",
    families=frozenset({IPFamily.IPv4}),
    render=render_userspace,
    options=addressing_options,
)
