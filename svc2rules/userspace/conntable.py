"""The proxy's open connections (TCP pairs, UDP associations), for draining on SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Abortable(Protocol):
    def abort(self) -> None: ...


class Connections:
    def __init__(self) -> None:
        self.active: set[Abortable] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.active)

    def add(self, conn: Abortable) -> None:
        self.active.add(conn)

    def discard(self, conn: Abortable) -> None:
        self.active.discard(conn)
        self._changed.set()

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a background task (the loop holds only weak ones)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every connection has ended or `timeout` passed; True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.active:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return not self.active
        return True

    def abort_all(self) -> None:
        for conn in list(self.active):
            conn.abort()
        self.active.clear()
        for task in list(self._tasks):
            task.cancel()
