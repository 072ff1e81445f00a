"""The connection guard: the protocol factory the HTTP listener accepts through.

Owns the table of open connections and enforces ``Limits`` on it before a connection can
hold a descriptor for long: at the cap, a new connection closes the oldest idle one (a
connection with no request in progress: a slow client still sending its headers, or an
idle keep-alive), or, when every connection is busy, is answered 503 and closed at once;
a connection that has not sent a complete request within ``header_timeout`` is closed
(aiohttp's keep-alive timeout, set to the same value, closes idle kept-alive ones).
Health checks therefore always get in, however many slow clients there are. Must not
parse HTTP: aiohttp's handler, wrapped here, does; ``middleware`` tells the guard when a
request is in progress.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from sbps.publish.http.limits import Limits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s")
_BODY = (b'{"error":{"code":"too_many_connections","message":"the server has too many '
         b'connections open; retry","field":null}}')


class _Refused(asyncio.Protocol):
    """Answers 503 without reading anything, and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL % (len(_BODY), _BODY))
        transport.close()


class _Conn(asyncio.Protocol):
    """aiohttp's handler for one connection, with the guard told of its life."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.busy = 0
        self.started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.made(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.lost(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self, reason: str) -> None:
        self.guard.limits.refused[reason] += 1
        if self.transport is not None:
            self.transport.close()


class ConnectionGuard:
    """Built with the app (``guard.middleware`` first in its chain); the listener sets
    ``factory`` to aiohttp's server once the runner is set up, then accepts through it."""

    def __init__(self, limits: Limits) -> None:
        self.factory: Callable[[], asyncio.Protocol] | None = None
        self.limits = limits
        # Accepted but not yet made (a TLS handshake in progress): weak, because asyncio
        # never tells the application protocol of a handshake that failed.
        self._pending: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._live: dict[_Conn, None] = {}  # insertion order: oldest first
        self._by_transport: dict[asyncio.BaseTransport, _Conn] = {}

    def open(self) -> int:
        return len(self._pending) + len(self._live)

    def __call__(self) -> asyncio.Protocol:
        if self.open() >= self.limits.max_connections and not self._evict():
            self.limits.refused["limit"] += 1
            return _Refused()
        assert self.factory is not None, "the listener sets factory before accepting"
        conn = _Conn(self, self.factory())
        self._pending.add(conn)
        self._count()
        return conn

    def _evict(self) -> bool:
        for conn in self._live:
            if not conn.busy:
                self._forget(conn)  # counted out now: its close completes later
                conn.close("evicted")
                return True
        return False

    def _count(self) -> None:
        self.limits.connections = self.open()

    def made(self, conn: _Conn) -> None:
        self._pending.discard(conn)
        assert conn.transport is not None
        self._live[conn] = None
        self._by_transport[conn.transport] = conn
        loop = asyncio.get_running_loop()
        conn.deadline = loop.call_later(self.limits.header_timeout, self._expire, conn)
        self._count()

    def _expire(self, conn: _Conn) -> None:
        conn.deadline = None
        if not conn.started and conn in self._live:
            self._forget(conn)
            conn.close("header_timeout")

    def _forget(self, conn: _Conn) -> None:
        self._live.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None
        self._count()

    def lost(self, conn: _Conn) -> None:
        self._pending.discard(conn)
        self._forget(conn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while its request runs (busy ones are not evicted)."""
        transport = request.transport
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is None:
            return await handler(request)
        conn.started = True
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1


GUARD = web.AppKey("sbps_guard", ConnectionGuard)
