"""The HTTP API under hostile clients, on the real app on loopback: more slow connections
than the cap, long polls beyond theirs, a client that trickles its headers, undecodable
credentials, and brute force on the notification secret."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sbps.publish.http.limits import Limits
from tests.fixtures.http_api import ApiServer, make_status, rootfs, start_api
from tests.fixtures.slow_clients import SlowClients

SECRET = "n0tify-secret-0123456789"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _start(tmp_path: Path, **limits: float) -> ApiServer:
    return await start_api(make_status([(rootfs("aaaa-1"), 11)]), tmp_path,
                           notify_secret=SECRET, limits=Limits(**limits))  # type: ignore[arg-type]


async def _until(what: str, check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _port(api: ApiServer) -> int:
    return int(api.url.rsplit(":", 1)[1])


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " ") or
                x.startswith(name + "{") and x.split(" ")[0] == name)
    return float(line.split()[-1])


async def test_slow_clients_beyond_the_cap_do_not_starve_healthz(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    api = await _start(tmp_path, max_connections=20, max_long_polls=5, header_timeout=120)
    try:
        with SlowClients("127.0.0.1", _port(api)) as slow:
            assert await asyncio.to_thread(slow.open, 40) == 40
            await _until("the server to accept all 40", lambda: sum(api.runner.guard.limits
                                                                    .refused.values()) >= 20)
            async with http.get(f"{api.url}/healthz") as r:
                assert r.status == 200
            states = await asyncio.to_thread(slow.states)
            # The server never held more than its cap: beyond it, a burst of new ones was
            # refused (503) or the oldest idle ones closed to make room.
            assert states["open"] <= 20, states
            assert states["refused"] + states["closed"] >= 20, states
            assert api.runner.guard.open() <= 20
            async with http.get(f"{api.url}/metrics") as r:
                text = await r.text()
        assert (_metric(text, 'sbps_http_connections_refused_total{reason="evicted"}') +
                _metric(text, 'sbps_http_connections_refused_total{reason="limit"}')) >= 20
        assert _metric(text, "sbps_http_connections_max") == 20
    finally:
        await api.close()


async def test_long_polls_beyond_their_cap_get_503(tmp_path: Path,
                                                   http: aiohttp.ClientSession) -> None:
    api = await _start(tmp_path, max_connections=20, max_long_polls=3, header_timeout=120)
    try:
        async with http.get(f"{api.url}/v1/target") as r:
            etag = r.headers["ETag"]
        headers = {"If-None-Match": etag}

        async def poll(wait: float) -> int:
            async with http.get(f"{api.url}/v1/target?wait={wait}", headers=headers) as r:
                await r.read()
                return r.status

        waiting = [asyncio.create_task(poll(60)) for _ in range(3)]
        await _until("three long polls", lambda: api.runner.guard.limits.long_polls == 3)
        async with http.get(f"{api.url}/v1/target?wait=2", headers=headers) as r:
            body = await r.json()
        assert r.status == 503, body
        assert body["error"]["code"] == "too_many_long_polls" and "Retry-After" in r.headers
        for t in waiting:
            t.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await _until("the slots to be given back", lambda: api.runner.guard.limits
                     .long_polls == 0)
        async with http.get(f"{api.url}/v1/target?wait=0.1", headers=headers) as r:
            assert r.status == 304
    finally:
        await api.close()


async def test_a_client_trickling_its_headers_is_cut(tmp_path: Path) -> None:
    api = await _start(tmp_path, max_connections=20, max_long_polls=3, header_timeout=1)
    try:
        slow = SlowClients("127.0.0.1", _port(api))
        lasted = await asyncio.to_thread(slow.trickle, 30.0)
        assert lasted < 30.0  # cut by the server, not by the end of the budget
        assert api.runner.guard.limits.refused["header_timeout"] == 1
    finally:
        await api.close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


async def test_undecodable_credentials_are_401_not_500(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    api = await _start(tmp_path)
    try:
        port = _port(api)
        caplog.set_level(logging.DEBUG)
        for value in (b"Bearer \xff\xfe\xfd", b"bearer \xc3\x28" + api.token.encode(),
                      b"\xff\xfe abc"):
            answer = await asyncio.to_thread(
                _raw, port, b"GET /debug/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: " + value + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        answer = await asyncio.to_thread(
            _raw, port, b"POST /v1/notify/%FF%FE%C3%28 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    finally:
        await api.close()


async def test_requests_aiohttp_cannot_parse_are_400_counted_and_quiet(
        tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    """An oversized header or a broken request line is the client's doing: 400, counted,
    and no traceback in the log (an attacker could otherwise fill it)."""
    api = await _start(tmp_path)
    try:
        port = _port(api)
        caplog.set_level(logging.DEBUG)
        bad = [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
               b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
               b"GET /healthz HTTP/9.Z\r\nHost: x\r\n\r\n"]
        for request in bad * 10:
            answer = await asyncio.to_thread(_raw, port, request)
            assert answer.split(b" ", 2)[1] == b"400", answer[:200]
        assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        async with http.get(f"{api.url}/metrics") as r:
            text = await r.text()
        assert _metric(text, 'sbps_http_connections_refused_total{reason="bad_request"}') == 30
    finally:
        await api.close()


async def test_notify_brute_force_is_throttled_counted_and_logged_once(
        tmp_path: Path, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    api = await _start(tmp_path)
    caplog.set_level(logging.INFO, logger="sbps.publish.http.throttle")
    try:
        statuses = []
        for i in range(300):
            async with http.post(f"{api.url}/v1/notify/guess-{i:06d}-0123456789") as r:
                statuses.append(r.status)
        wrong, throttled = statuses.count(404), statuses.count(429)
        assert wrong + throttled == 300 and wrong <= 10 and throttled >= 290, statuses[:20]
        async with http.get(f"{api.url}/metrics") as r:
            text = await r.text()
        assert _metric(text, 'sbps_notify_rejected_total{reason="throttled"}') == throttled
        assert _metric(text, 'sbps_notify_rejected_total{reason="wrong_secret"}') == wrong
        lines = [r for r in caplog.records if r.name == "sbps.publish.http.throttle"]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert api.control.reasons == []  # type: ignore[attr-defined]
    finally:
        await api.close()
