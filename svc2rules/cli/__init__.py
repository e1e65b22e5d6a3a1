"""Command-line interface. The only place that knows about exit codes.

Each command lives in its own module and registers itself on `app`; importing the
module here is all it takes to add one.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from svc2rules.cli import apply as _apply  # noqa: F401  (registers apply, diff, cleanup)
from svc2rules.cli import compile as _compile  # noqa: F401  (registers the command)
from svc2rules.cli import explain as _explain  # noqa: F401  (registers the command)
from svc2rules.cli import proxy as _proxy  # noqa: F401  (registers the command)
from svc2rules.cli.common import ExitCode, app

__all__ = ["ExitCode", "app", "main"]


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    # A compilation allocates millions of small objects and frees almost none before
    # exiting; the cyclic collector would rescan them over and over (3x slower at 10k
    # Services) while finding nothing to free.
    gc.disable()
    command: Callable[..., Any] = typer.main.get_command(app)
    code: int | str | None = 0
    try:
        command(args=argv, prog_name="svc2rules", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
    args = sys.argv[1:] if argv is None else argv
    if argv is None and isinstance(code, int) and "proxy" not in args:
        _exit_now(code)
    raise SystemExit(code) from None


def _exit_now(code: int) -> NoReturn:
    """Exit without tearing the interpreter down: a batch command has closed its files and
    waited for its processes, and freeing the objects of a 10k-Service run one by one (and
    the final collection) costs 0.1-0.3 s. The long-running proxy exits normally."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or ExitCode.FAILURE
    os._exit(code)
