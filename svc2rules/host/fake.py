"""An in-memory host for tests: a Runner that starts no process.

Each command goes to the emulator of its tool (knftables' Fake is the model): an emulator
keeps what the kernel would hold and answers as the tool would, with its exit code, stdout
and stderr. `unshare --net -- ARGV` runs ARGV in a fresh, empty network namespace of its own
(thrown away afterwards), as a scratch-namespace trial does on a real host. Emulators live
next to the syntax they emulate (e.g. svc2rules.syntax.xtables.fake).

    runner = FakeRunner(XtablesEmulator)
    applier.load(runner, change)
    runner.emulator(XtablesEmulator).tables(IPFamily.IPv4)   # what the "kernel" holds
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from svc2rules.errors import ApplyError
from svc2rules.host.runner import Result, Runner

SCRATCH_NAMESPACE = ("unshare", "--net", "--")


class Emulator(Protocol):
    """One tool (or family of tools sharing a kernel state) in one network namespace."""

    @property
    def commands(self) -> tuple[str, ...]:
        """The argv[0]s it answers."""
        ...

    def run(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        """Exit code, stdout and stderr of `argv` given `stdin`."""
        ...


EmulatorT = TypeVar("EmulatorT")


@dataclass(frozen=True, slots=True)
class Call:
    """One command the fake host was asked to run."""

    argv: tuple[str, ...]
    stdin: str | None
    loader: bool
    scratch: bool  # in a scratch namespace (unshare --net)


class FakeNamespace:
    """The emulators of one network namespace."""

    def __init__(self, factories: Sequence[Callable[[], Emulator]]) -> None:
        self.emulators = [factory() for factory in factories]
        self._by_command = {command: e for e in self.emulators for command in e.commands}

    def run(self, argv: Sequence[str], stdin: str | None) -> Result:
        emulator = self._by_command.get(argv[0]) if argv else None
        if emulator is None:
            # As the real runner says of a tool that is not installed.
            raise ApplyError(f"{argv[0] if argv else '(nothing)'} not found: no emulator on this fake host")
        code, stdout, stderr = emulator.run(argv, stdin)
        return Result(tuple(argv), code, stdout, stderr)


class FakeRunner(Runner):
    """A Runner whose commands run against in-memory emulators (one set per namespace)."""

    def __init__(self, *factories: Callable[[], Emulator]) -> None:
        super().__init__()
        self.factories = factories
        self.host = FakeNamespace(factories)
        self.calls: list[Call] = []

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, loader: bool = False, holds_lock: bool = False
    ) -> Result:
        argv = tuple(argv)
        self.log.append(argv)
        scratch = argv[: len(SCRATCH_NAMESPACE)] == SCRATCH_NAMESPACE
        self.calls.append(Call(argv, stdin, loader, scratch))
        if scratch:
            return FakeNamespace(self.factories).run(argv[len(SCRATCH_NAMESPACE) :], stdin)
        return self.host.run(argv, stdin)

    def run_many(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        return [self.run(argv) for argv in argvs]

    def emulator(self, kind: type[EmulatorT]) -> EmulatorT:
        """The host namespace's emulator of that type."""
        for emulator in self.host.emulators:
            if isinstance(emulator, kind):
                return emulator
        raise LookupError(f"no {kind.__name__} on this fake host")

    def loads(self) -> list[Call]:
        """The kernel writes made on the host (not in a scratch namespace)."""
        return [call for call in self.calls if call.loader and not call.scratch]
