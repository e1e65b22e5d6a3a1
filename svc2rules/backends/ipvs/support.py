"""Can this host run the ipvs backend? What `--backend auto` asks before it picks one.

kube-proxy's seed behaviour: use IPVS when the kernel has it, else fall back to iptables
(and say so). The kernel has it when the IPVS generic netlink family resolves -- asking for
it makes the kernel load `ip_vs` if it is a module -- and `ipset`, which the companion
rules need, is installed.
"""

from __future__ import annotations

from collections.abc import Callable

from svc2rules.errors import ApplyError
from svc2rules.host.runner import which
from svc2rules.syntax import ipset

AUTO = "auto"

# What kube-proxy logs (and records as an IPVSDeprecation event) when it starts in ipvs mode:
# cmd/kube-proxy/app/server_linux.go createProxier, since v1.35 (KEP-5495). The mode is behind
# the KubeProxyIPVS feature gate since v1.37, planned off by default in v1.40 and removed after.
DEPRECATION = "The ipvs proxier is now deprecated and may be removed in a future release. Please use 'nftables' instead."


def ipvs_unavailable() -> str | None:
    """Why this host cannot run the ipvs backend, or None when it can."""
    from svc2rules.backends.ipvs.kernel import Kernel

    kernel = Kernel()
    try:
        kernel.ipvs()
    except ApplyError as exc:
        return str(exc)
    except Exception as exc:  # pyroute2 missing a socket family, EPERM, ...
        return f"cannot open the IPVS netlink socket: {exc}"
    finally:
        kernel.close()
    if which(ipset.RESTORE_ARGV[0]) is None:
        return "the ipset tool is not installed (the IPVS mode's iptables rules match on ipsets)"
    return None


def choose_auto(probe: Callable[[], str | None] = ipvs_unavailable) -> tuple[str, str]:
    """The backend `auto` stands for on this host, and a line saying why."""
    reason = probe()
    if reason is None:
        return "ipvs", "backend auto: the kernel supports IPVS: using the ipvs backend"
    # kube-proxy's fallback; imported only when it is the one chosen.
    from svc2rules.backends.iptables import BACKEND as FALLBACK

    return FALLBACK.name, f"backend auto: {reason}; falling back to the {FALLBACK.name} backend"
