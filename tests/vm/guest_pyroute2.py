"""Runs inside the VM with the checkout's venv python (see guest_selftest.sh).

Writes JSON to argv[1]: which python ran, where svc2rules was imported from, and, if pyroute2
is installed, the IPVS table as pyroute2 dumps it after adding one service through it.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
from typing import Any


def main(out: str) -> None:
    import svc2rules

    result: dict[str, Any] = {"prefix": sys.prefix, "svc2rules": svc2rules.__file__}
    try:
        # (no type stubs; and it may be missing, which the test reports as a skip)
        pyroute2 = importlib.import_module("pyroute2")
        IPVS, IPVSDest, IPVSService = pyroute2.IPVS, pyroute2.IPVSDest, pyroute2.IPVSService
    except ImportError as exc:
        result["pyroute2"] = None
        result["pyroute2_error"] = str(exc)
    else:
        result["pyroute2"] = pyroute2.__version__
        ipvs = IPVS()
        try:
            svc = IPVSService(addr="10.96.0.30", port=8080, protocol=socket.IPPROTO_TCP, sched_name="rr")
            ipvs.service("add", service=svc)
            # fwd_method 0 = masquerading; pyroute2's default (3) would be direct routing
            ipvs.dest("add", service=svc, dest=IPVSDest(addr="10.244.1.2", port=80, fwd_method=0, weight=3))
            dump = []
            for msg in ipvs.service("dump"):
                s = IPVSService.from_message(msg)
                dump.append([s["addr"], s["port"], s["sched_name"]])
            result["dump"] = sorted(dump)
        finally:
            ipvs.close()
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
