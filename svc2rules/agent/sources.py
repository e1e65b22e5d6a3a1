"""Where `run` reads its input from, and how it learns that the input changed.

* `FolderInput`: the `-f PATH` files and folders (`-R`: recursively), read once, then watched
  with inotify (watchfiles): a changed file is read again alone, the others are not.
* `EventStream`: `--events PATH|-`, the output of
  `kubectl get services|endpointslices|endpoints -A --watch --output-watch-events -o json`:
  a stream of `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}` values.
  Each object is one source of the input. A FIFO is opened again when its writer goes (a
  kubectl restarted by systemd lists every object again: what it has not listed once it pauses
  is gone); a regular file or stdin is read to its end.

Each yields changes as `{source name: (order, Source) or None}` for agent.live.LiveCompiler.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from svc2rules.agent.live import OrderKey
from svc2rules.errors import Diagnostic, InputError, UsageError
from svc2rules.load import Source
from svc2rules.load.reader import MANIFEST_SUFFIXES, read_sources

Change = tuple[OrderKey, Source] | None
Changes = dict[str, Change]

# watchfiles: a change is reported once no other came for STEP_MS (the batching is the sync
# loop's: --min-sync-period); the watcher thread wakes every STEP_MS while idle.
STEP_MS = 5
DEBOUNCE_MS = 200


class FolderInput:
    """The manifest files of the -f paths, as read_sources lists them, kept up to date."""

    def __init__(self, paths: list[str], *, recursive: bool, max_bytes: int) -> None:
        if not paths:
            raise UsageError("-f: run needs a file or folder to watch (or --events)")
        if "-" in paths:
            raise UsageError("-f -: stdin cannot be watched; give a stream of watch events with --events -")
        self.paths = [Path(p) for p in paths]
        self.recursive = recursive
        self.max_bytes = max_bytes
        self.known: dict[str, int] = {}  # file -> size

    def read_all(self) -> Changes:
        """Every file (read_sources' order and errors: a missing path is a usage error)."""
        changes: Changes = {}
        for index, path in enumerate(self.paths):
            for source in read_sources(
                [str(path)], recursive=self.recursive, stdin=_NO_STDIN, max_bytes=self.max_bytes
            ):
                changes[source.name] = ((index, Path(source.name)), source)
                self.known[source.name] = len(source.data)
        return changes

    def watched_folders(self) -> list[str]:
        """What to watch: folders themselves, and a file's folder (a file replaced by a rename
        is a new inode that a watch on the old one would miss)."""
        return sorted({str(p if p.is_dir() else p.parent) for p in self.paths})

    def changed(self, paths: Iterable[str]) -> tuple[Changes, list[Diagnostic]]:
        """Read again the files among `paths` (a folder: every file under it)."""
        changes: Changes = {}
        problems: list[Diagnostic] = []
        for raw in sorted(set(paths)):
            path = Path(raw)
            for name, order in self._files_under(path):
                was_known = name in self.known
                change, problem = self._read(name, order)
                if problem is not None:
                    problems.append(problem)
                elif change is not None or was_known:
                    changes[name] = change
        return changes, problems

    def _files_under(self, path: Path) -> list[tuple[str, OrderKey]]:
        """The manifest files `path` is or holds (known ones that are gone included)."""
        out: dict[str, OrderKey] = {}
        for index, root in enumerate(self.paths):
            if not root.is_dir() and path == root:
                out[str(path)] = (index, path)
                continue
            if not _inside(path, root, self.recursive):
                continue
            prefix = str(path) + os.sep
            for name in self.known:
                if name == str(path) or name.startswith(prefix):
                    out[name] = (index, Path(name))
            if path.is_dir():
                pattern = "**/*" if self.recursive else "*"
                for found in path.glob(pattern):
                    if found.suffix.lower() in MANIFEST_SUFFIXES and _inside(found, root, self.recursive):
                        out[str(found)] = (index, found)
            elif path.suffix.lower() in MANIFEST_SUFFIXES:
                out[str(path)] = (index, path)
        return sorted(out.items(), key=lambda item: item[1])

    def _read(self, name: str, order: OrderKey) -> tuple[Change, Diagnostic | None]:
        path = Path(name)
        try:
            if not path.is_file():
                self.known.pop(name, None)
                return None, None
            budget = self.max_bytes - sum(size for other, size in self.known.items() if other != name)
            (source,) = read_sources([name], recursive=False, stdin=_NO_STDIN, max_bytes=max(budget, 0))
        except InputError as exc:
            if all("no such file" in d.message for d in exc.diagnostics):
                self.known.pop(name, None)
                return None, None
            return None, exc.diagnostics[0]
        self.known[name] = len(source.data)
        return (order, source), None


def _inside(path: Path, root: Path, recursive: bool) -> bool:
    if not root.is_dir():
        return path == root
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    return bool(relative.parts) and (recursive or len(relative.parts) == 1)


class _NoStdin:
    def read(self, size: int = -1) -> bytes:
        return b""


_NO_STDIN: Any = _NoStdin()


class FolderWatch:
    """A watchfiles thread reporting changed paths to the event loop."""

    def __init__(self, folders: list[str], recursive: bool, report: Callable[[set[str]], None]) -> None:
        self.folders = folders
        self.recursive = recursive
        self.stop_event = threading.Event()
        self.report = report
        self.thread = threading.Thread(target=self._run, name="svc2rules-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from watchfiles import watch

        for changes in watch(
            *self.folders,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=self.stop_event,
            recursive=self.recursive,
            ignore_permission_denied=True,
        ):
            self.report({path for _, path in changes})

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


# -- watch events -------------------------------------------------------------------------------

_READ_SIZE = 1 << 16


@dataclass
class WatchEvent:
    type: str
    object: dict[str, Any]


class EventParser:
    """Splits a byte stream into the JSON values kubectl writes one after another."""

    def __init__(self) -> None:
        self.buffer = ""
        self.decoder = json.JSONDecoder()
        self.pending = b""

    def feed(self, chunk: bytes) -> list[Any]:
        data = self.pending + chunk
        try:
            text = data.decode("utf-8")
            self.pending = b""
        except UnicodeDecodeError as exc:
            # A chunk may end inside a character: keep its first bytes for the next one.
            text, self.pending = data[: exc.start].decode("utf-8"), data[exc.start :]
        self.buffer += text
        values = []
        position = 0
        buffer = self.buffer
        while True:
            while position < len(buffer) and buffer[position].isspace():
                position += 1
            if position >= len(buffer):
                break
            try:
                value, end = self.decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(buffer) - 1 or "Unterminated" in exc.msg or "Expecting" in exc.msg:
                    break  # the rest of this value is still to come
                raise
            values.append(value)
            position = end
        self.buffer = buffer[position:]
        return values


@dataclass
class EventStream:
    """The objects one stream of watch events currently lists."""

    label: str  # the path, or <stdin>
    index: int  # its place among the sources (order)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    relisting: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def source_name(self, key: tuple[str, str, str]) -> str:
        kind, namespace, name = key
        return f"{self.label}: {kind} {namespace}/{name}"

    def apply(self, event: Any) -> tuple[Changes, list[str], dict[str, Any] | None]:
        """One event: the changes it makes, what to say about it, and a Node object it carries
        (for /healthz)."""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return (
                {},
                [f'{self.label}: not a watch event (expected {{"type": ..., "object": ...}}); ignored'],
                None,
            )
        kind_of_event, obj = event["type"], event.get("object")
        if kind_of_event == "BOOKMARK":
            return {}, [], None
        if kind_of_event == "ERROR":
            message = obj.get("message") if isinstance(obj, dict) else None
            said = message if isinstance(message, str) and message else repr(obj)
            return {}, [f"{self.label}: the watch reported an error: {said}"], None
        if kind_of_event not in ("ADDED", "MODIFIED", "DELETED") or not isinstance(obj, dict):
            return {}, [f"{self.label}: unknown watch event type {kind_of_event!r}; ignored"], None
        key = _object_key(obj)
        if key is None:
            return (
                {},
                [f"{self.label}: {kind_of_event} event of an object without kind and name; ignored"],
                None,
            )
        if key[0] == "Node":
            return {}, [], (None if kind_of_event == "DELETED" else obj)
        table = self.relisting if self.relisting is not None else self.objects
        if kind_of_event == "DELETED":
            if table.pop(key, None) is None or self.relisting is not None:
                return {}, [], None  # never seen (or replaced when the listing settles)
            return {self.source_name(key): None}, [], None
        table[key] = obj
        if self.relisting is not None:
            return {}, [], None
        return {self.source_name(key): self._change(key, obj)}, [], None

    def _change(self, key: tuple[str, str, str], obj: dict[str, Any]) -> Change:
        data = json.dumps(obj, separators=(",", ":")).encode()
        return (self.index, *key), Source(self.source_name(key), data)

    def restarted(self) -> None:
        """A new writer: what it lists replaces what the last one had listed, once it settles."""
        self.relisting = {}

    def settle(self) -> Changes:
        """The new writer's listing replaces the old one."""
        if self.relisting is None:
            return {}
        fresh, self.relisting = self.relisting, None
        changes: Changes = {self.source_name(key): None for key in self.objects if key not in fresh}
        for key, obj in fresh.items():
            if self.objects.get(key) != obj:
                changes[self.source_name(key)] = self._change(key, obj)
        self.objects = fresh
        return changes


def _object_key(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    if (
        not isinstance(kind, str)
        or not isinstance(metadata, dict)
        or not isinstance(metadata.get("name"), str)
    ):
        return None
    return kind, str(metadata.get("namespace") or ""), metadata["name"]


class StreamReader:
    """Reads one event stream in a thread and hands its events to the event loop. A FIFO is
    opened again when its writer goes; a regular file or stdin ends the stream at its end."""

    def __init__(
        self,
        path: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str, Any], None],
        stdin: BinaryIO,
    ) -> None:
        self.path = path
        self.loop = loop
        self.deliver = deliver
        self.stdin = stdin
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"svc2rules-events-{path}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _send(self, what: str, value: Any = None) -> None:
        if not self.stopped.is_set():
            self.loop.call_soon_threadsafe(self.deliver, what, value)

    def _run(self) -> None:
        first = True
        while not self.stopped.is_set():
            try:
                stream = self.stdin if self.path == "-" else open(self.path, "rb")  # noqa: SIM115
            except OSError as exc:
                self._send("fatal", f"--events {self.path}: cannot open: {exc.strerror or exc}")
                return
            fifo = self.path != "-" and stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
            if not first:
                self._send("restart")
            first = False
            parser = EventParser()
            try:
                while True:
                    chunk = os.read(stream.fileno(), _READ_SIZE)
                    if not chunk:
                        break
                    for value in parser.feed(chunk):
                        self._send("event", value)
            except (OSError, ValueError) as exc:
                self._send("problem", f"--events {self.path}: unreadable stream ({exc}); reading it again")
            finally:
                if stream is not self.stdin:
                    stream.close()
            if parser.buffer.strip():
                self._send(
                    "problem", f"--events {self.path}: the stream ended inside an event; it was ignored"
                )
            if not fifo:
                self._send("ended")
                return

    def stop(self) -> None:
        self.stopped.set()
