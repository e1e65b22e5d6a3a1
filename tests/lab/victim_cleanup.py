"""Not collected by default (no ``test_`` prefix): run in a subprocess by test_lab_cleanup.py.

It builds a lab through the real fixture, records the namespace names, then fails or waits to be
killed, so the parent can check that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .lab import Lab


def test_victim(lab: Lab) -> None:
    out = Path(os.environ["S2R_VICTIM_OUT"])
    out.write_text(json.dumps(sorted(lab.topo.ns.values())))
    if os.environ.get("S2R_VICTIM_MODE") == "wait":
        time.sleep(float(os.environ.get("S2R_VICTIM_WAIT", "300")))  # until the parent's signal
    raise RuntimeError("the test body failed on purpose")
