"""apply without the privileges it needs: one clear line, for a plain user and for root with
every capability dropped alike (so this module is not marked `root`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .helpers import CLI, small_cluster


def test_without_net_admin_one_line_exit_1(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        argv = [CLI, "apply", "-f", "-", "--state-dir", str(tmp_path)]
    else:
        # Drop every capability, as an unprivileged user would run it.
        argv = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            CLI,
            "apply",
            "-f",
            "-",
            "--state-dir",
            str(tmp_path),
        ]
    proc = subprocess.run(argv, input=small_cluster(), capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "error: needs root or CAP_NET_ADMIN to read and change the host's rules"
