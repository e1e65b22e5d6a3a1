"""userspace backend: the nat rules that send Service traffic to `svc2rules proxy`."""

from svc2rules.backends import Backend
from svc2rules.backends.userspace.render import render_userspace

BACKEND = Backend(
    name="userspace",
    summary="iptables-restore script REDIRECTing Service addresses to `svc2rules proxy` (kube-proxy userspace mode)",
    render=render_userspace,
)
