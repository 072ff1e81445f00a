"""Supervised, named asyncio tasks: created in one place, watched, stopped with a deadline.

Owns task lifetime only. If a long-lived task ends (it should run until cancelled) or
raises, the supervisor records why and sets ``failed`` so the daemon stops cleanly and
exits non-zero, letting systemd restart it. Must not know what the tasks do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed = asyncio.Event()
        self.reason = ""

    def start(self, name: str, coro: Coroutine[Any, Any, Any], *,
              oneshot: bool = False) -> asyncio.Task[Any]:
        """Start a named task. A long-lived task must run until cancelled; a ``oneshot``
        task may finish, but must not raise."""
        task = asyncio.create_task(coro, name=name)
        self.tasks[name] = task
        task.add_done_callback(lambda t: self._done(t, oneshot))
        return task

    def _done(self, task: asyncio.Task[Any], oneshot: bool) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if oneshot and exc is None:
            return
        why = f"task {task.get_name()} " + (f"died: {exc!r}" if exc else "ended unexpectedly")
        if not self.failed.is_set():
            self.reason = why
            log.error("%s; stopping", why, exc_info=exc)
            self.failed.set()

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, task in sorted(self.tasks.items()):
            state = "running"
            if task.cancelled():
                state = "cancelled"
            elif task.done():
                state = "failed" if task.exception() else "done"
            out.append({"name": name, "state": state})
        return out

    async def stop(self, deadline: float) -> bool:
        """Cancel every task and wait up to ``deadline`` seconds; False if some hung."""
        for task in self.tasks.values():
            task.cancel()
        if not self.tasks:
            return True
        done, pending = await asyncio.wait(self.tasks.values(), timeout=deadline)
        for task in pending:
            log.error("task %s did not stop within %.0f s", task.get_name(), deadline)
        return not pending
