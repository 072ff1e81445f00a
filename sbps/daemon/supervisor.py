"""Supervised, named asyncio tasks: created in one place, watched, stopped with a deadline.

Owns task lifetime only. If a long-lived task ends (it should run until cancelled) or
raises, the supervisor logs why with the traceback. A task started with ``restart`` is
started again from it after a backoff (1 s doubling up to 60 s; counted in ``restarts``):
the process does not end because a task died (safety invariant 10, which overrides the
older "a dead task stops the daemon" rule). A task without ``restart`` sets ``failed``
and ``reason``, so the daemon stops and exits non-zero, letting systemd restart it;
the daemon withdraws no DNS records then. Must not know what the tasks do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed = asyncio.Event()
        self.reason = ""
        self.restarts: Counter[str] = Counter()
        self._stopping = False

    def start(self, name: str, coro: Coroutine[Any, Any, Any], *, oneshot: bool = False,
              restart: Callable[[], Coroutine[Any, Any, Any]] | None = None,
              ) -> asyncio.Task[Any]:
        """Start a named task. A long-lived task must run until cancelled; a ``oneshot``
        task may finish, but must not raise. ``restart`` makes a new coroutine for the
        task when it dies."""
        task = asyncio.create_task(coro, name=name)
        self.tasks[name] = task
        task.add_done_callback(lambda t: self._done(t, oneshot, restart))
        return task

    def _done(self, task: asyncio.Task[Any], oneshot: bool,
              restart: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if oneshot and exc is None:
            return
        name = task.get_name()
        why = f"task {name} " + (f"died: {exc!r}" if exc else "ended unexpectedly")
        if restart is not None:
            self.restarts[name] += 1
            delay = min(60.0, 2.0 ** (self.restarts[name] - 1))
            log.error("%s; restarting it in %.0f s", why, delay, exc_info=exc)
            asyncio.get_running_loop().call_later(delay, self._restart, name, restart)
            return
        if not self.failed.is_set():
            self.reason = why
            log.error("%s; stopping", why, exc_info=exc)
            self.failed.set()

    def _restart(self, name: str, restart: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if not self._stopping:
            self.start(name, restart(), restart=restart)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, task in sorted(self.tasks.items()):
            state = "running"
            if task.cancelled():
                state = "cancelled"
            elif task.done():
                state = "failed" if task.exception() else "done"
            out.append({"name": name, "state": state, "restarts": self.restarts[name]})
        return out

    async def stop(self, deadline: float) -> bool:
        """Cancel every task and wait up to ``deadline`` seconds; False if some hung."""
        self._stopping = True
        for task in self.tasks.values():
            task.cancel()
        if not self.tasks:
            return True
        done, pending = await asyncio.wait(self.tasks.values(), timeout=deadline)
        for task in pending:
            log.error("task %s did not stop within %.0f s", task.get_name(), deadline)
        return not pending
