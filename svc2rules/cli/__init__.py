"""Command-line interface. The only place that knows about exit codes.

Each command lives in its own module and registers itself on `app`; adding one is a line in
COMMANDS. A run imports only the module of the command it runs (start-up time is part of
every `apply`); `svc2rules.cli.app` and `svc2rules --help` have every command.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import typer

from svc2rules.cli.common import ExitCode
from svc2rules.cli.common import app as _app

__all__ = ["COMMANDS", "ExitCode", "main"]

# Command -> the module (svc2rules.cli.<module>) that registers it.
COMMANDS = {
    "apply": "apply",
    "diff": "apply",
    "cleanup": "apply",
    "compile": "compile",
    "endpoints": "endpoints",
    "explain": "explain",
    "proxy": "proxy",
    "run": "run",
}


def registered(command: str | None = None) -> typer.Typer:
    """The app with `command`'s module imported (every command's when None or unknown)."""
    modules = {COMMANDS[command]} if command in COMMANDS else set(COMMANDS.values())
    for module in sorted(modules):
        importlib.import_module(f"svc2rules.cli.{module}")
    return _app


def __getattr__(name: str) -> typer.Typer:
    # `from svc2rules.cli import app` (tests, other entry points) gets every command.
    if name == "app":
        return registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_of(args: Sequence[str]) -> str | None:
    """The command a command line runs: its first word that is not an option."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    # A compilation allocates millions of small objects and frees almost none before
    # exiting; the cyclic collector would rescan them over and over (3x slower at 10k
    # Services) while finding nothing to free.
    gc.disable()
    args = sys.argv[1:] if argv is None else argv
    name = _command_of(args)
    command: Callable[..., Any] = typer.main.get_command(registered(name))
    code: int | str | None = 0
    try:
        command(args=argv, prog_name="svc2rules", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
    if argv is None and isinstance(code, int) and name != "proxy":
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
