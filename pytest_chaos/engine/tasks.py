"""The one place where the engine creates background tasks.

asyncio keeps only a weak reference to a running task, so a task nobody holds can be
garbage-collected mid-flight. Every engine task is created through the `TaskSet` of the engine
that owns it: named, kept until done, and cancelled by that engine's shutdown only. Other code
sharing the event loop (a test's own tasks, another engine) is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("pytest_chaos.engine")


class TaskSet:
    """The background tasks of one engine."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Task[Any]:
        """Start `coro` as a named task that stays referenced until it finishes, on `loop`
        (default: the running loop; a caller that knows it saves the lookup)."""
        task = (loop or asyncio.get_running_loop()).create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self, wait_seconds: float) -> None:
        """Cancel this set's tasks (and any spawned meanwhile); wait `wait_seconds` at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while pending := [task for task in self._running if not task.done()]:
            for task in pending:
                task.cancel()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(pending, timeout=remaining)

    def __len__(self) -> int:
        return len(self._running)
