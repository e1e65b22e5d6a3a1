"""userspace backend: the nat rules that send Service traffic to `svc2rules proxy`, and their
applier (which `svc2rules proxy --apply-rules` uses too). The proxy's runtime
(svc2rules/userspace) imports this backend's layout and addressing, never the reverse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from svc2rules.backends import Backend, RenderOptions
from svc2rules.backends.userspace.addressing import Addressing, addressing_options
from svc2rules.backends.userspace.layout import FAMILIES
from svc2rules.backends.userspace.render import render_userspace

if TYPE_CHECKING:
    from svc2rules.backends.userspace.apply import UserspaceApplier


def _applier(options: RenderOptions[Addressing]) -> UserspaceApplier:
    from svc2rules.backends.userspace.apply import UserspaceApplier

    return UserspaceApplier(options)


BACKEND: Backend[Addressing] = Backend(
    name="userspace",
    summary="iptables-restore script REDIRECTing Service addresses to `svc2rules proxy` (kube-proxy userspace mode)",
    families=FAMILIES,
    render=render_userspace,
    options=addressing_options,
    applier=_applier,
)
