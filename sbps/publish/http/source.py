"""The status source of the HTTP API: the current snapshot, change notification, rendering.

Owns the wake-up of long polls and the per-snapshot cache of rendered documents. The
reconciler replaces its frozen ``Status`` after every pass; ``notify_changed()`` (called by
``follow()``, the task the daemon runs, or directly) wakes every waiter, which re-checks
whether *its* document changed. Rendered bodies and ETags are computed once per snapshot,
so a 304 costs a dict lookup. Must not mutate the snapshot or run blocking code.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sbps.reconcile.status import Status

__all__ = ["PassWaiter", "Rendered", "Status", "StatusSource"]

log = logging.getLogger(__name__)

#: How many distinct documents (e.g. per-image views) are cached for one snapshot.
_CACHE_LIMIT = 1024


@dataclass(frozen=True)
class Rendered:
    """One JSON document for one snapshot: its body and strong ETag (``"..."``)."""

    body: bytes
    etag: str
    found: bool = True

    @classmethod
    def of(cls, body: bytes, found: bool = True) -> Rendered:
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', found)


class PassWaiter(Protocol):
    @property
    def status(self) -> Status: ...

    async def wait_for_pass(self, number: int) -> Status: ...


class StatusSource:
    def __init__(self, get: Callable[[], Status],
                 listeners: Sequence[Callable[[Status], None]] = ()) -> None:
        self._get = get
        self._listeners = tuple(listeners)
        self._changed = asyncio.Event()
        self._cached_for: Status | None = None
        self._cache: dict[str, Rendered] = {}

    def snapshot(self) -> Status:
        return self._get()

    def notify_changed(self) -> None:
        """The snapshot may have changed: wake every long poll, tell the listeners."""
        status = self._get()
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("status listener %r failed", listener)
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def follow(self, reconciler: PassWaiter) -> None:
        """Notify after every pass of ``reconciler``; runs until cancelled."""
        seen = reconciler.status.passes
        if seen:
            self.notify_changed()
        while True:
            await reconciler.wait_for_pass(seen + 1)
            seen = reconciler.status.passes
            self.notify_changed()

    def render(self, name: str, build: Callable[[Status], Rendered],
               status: Status | None = None) -> Rendered:
        """The document ``name`` for the current (or given) snapshot, built at most once."""
        status = status or self._get()
        if status is not self._cached_for:
            self._cached_for, self._cache = status, {}
        doc = self._cache.get(name)
        if doc is None:
            doc = build(status)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[name] = doc
        return doc

    async def wait_changed(self, name: str, build: Callable[[Status], Rendered], etag: str,
                           timeout: float) -> Rendered | None:
        """The document once its ETag differs from ``etag``; None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            doc = self.render(name, build)
            if doc.etag != etag:
                return doc
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return None
