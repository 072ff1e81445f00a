"""Listening: the socket, TLS, the connection guard, and the URL file for sbpsctl.

Owns ``start_http``/``run_http``: the app's aiohttp server is reached only through the
``ConnectionGuard`` (our own ``loop.create_server``, not an aiohttp site, so that every
accepted connection passes the caps of ``HttpDeps.limits`` first), with aiohttp's keep-alive
timeout set to ``header_timeout`` and a TLS handshake bounded by the same time. Must not
route or answer requests: app.py does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from sbps.config import HttpConfig
from sbps.core.errors import ConfigError
from sbps.publish.http.deps import DEPS
from sbps.publish.http.guard import GUARD, ConnectionGuard
from sbps.publish.http.limits import Limits

log = logging.getLogger(__name__)

URL_FILE = "http-url"


def _loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def tls_context(cfg: HttpConfig) -> ssl.SSLContext | None:
    if not cfg.tls_cert_file and not cfg.tls_key_file:
        return None
    if not (cfg.tls_cert_file and cfg.tls_key_file):
        raise ConfigError("http.tls_key_file" if cfg.tls_cert_file else "http.tls_cert_file",
                          "", "TLS needs both tls_cert_file and tls_key_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("http.tls_cert_file", cfg.tls_cert_file,
                          f"cannot load the certificate and key: {exc}") from exc
    return ctx


def url_of(cfg: HttpConfig, port: int, tls: bool) -> str:
    host = "127.0.0.1" if cfg.bind in ("0.0.0.0", "") else "::1" if cfg.bind == "::" \
        else cfg.bind
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


class HandlerLog(logging.LoggerAdapter):
    """aiohttp's logger for its connection handlers. A request aiohttp cannot parse (a
    header over its size limit, bad syntax...) is the client's doing: it is answered 400 by
    aiohttp, counted (``bad_request``) and logged at debug without its traceback, so no
    client can fill the log with tracebacks. Errors of our own handlers stay errors."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.limits = limits

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self.limits.refused["bad_request"] += 1
            self.logger.debug(f"{msg}: %s", *args, exc)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


class HttpServer:
    """A started API server: ``app``, ``port``, ``guard``; ``await cleanup()`` stops it."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server, guard: ConnectionGuard,
                 port: int) -> None:
        self.runner = runner
        self.server = server
        self.guard = guard
        self.port = port

    @property
    def app(self) -> web.Application:
        app = self.runner.app
        assert isinstance(app, web.Application)
        return app

    async def cleanup(self) -> None:
        self.server.close()  # no new connections; then aiohttp closes the open ones
        await self.runner.cleanup()
        await self.server.wait_closed()


async def start_http(cfg: HttpConfig, app: web.Application,
                     state_dir: str | None = None) -> tuple[HttpServer, int]:
    """Listen on ``http.bind``/``http.port`` (port 0 picks one); returns the server (stop it
    with ``await server.cleanup()``) and the bound port. With ``state_dir``, the URL is
    written to ``<state_dir>/http-url`` for sbpsctl."""
    ctx = tls_context(cfg)
    if ctx is None and not _loopback(cfg.bind):
        log.warning("the HTTP API listens on %s without TLS; set http.tls_cert_file and "
                    "http.tls_key_file", cfg.bind)
    limits = app[DEPS].limits
    # handler_cancellation: a long poll whose client went away gives its slot back now.
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=limits.header_timeout, handler_cancellation=True,
                           logger=HandlerLog(limits))
    await runner.setup()
    guard = app[GUARD]
    guard.factory = runner.server
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            guard, cfg.bind or None, cfg.port, ssl=ctx, reuse_address=True,
            ssl_handshake_timeout=limits.header_timeout if ctx else None)
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError("http.port", f"{cfg.bind}:{cfg.port}",
                          f"cannot listen: {exc.strerror}") from exc
    port = int(server.sockets[0].getsockname()[1])
    url = url_of(cfg, port, ctx is not None)
    log.info("HTTP API listening on %s (at most %d connections, %d long polls)", url,
             limits.max_connections, limits.max_long_polls, extra={"port": port})
    if state_dir:
        _write_url(Path(state_dir) / URL_FILE, url)
    return HttpServer(runner, server, guard, port), port


def _write_url(path: Path, url: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(url + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc.strerror)


async def run_http(cfg: HttpConfig, app: web.Application, state_dir: str | None = None,
                   started: Callable[[int], None] | None = None) -> None:
    """``start_http``, then serve until cancelled (a supervised task); cleans up."""
    server, port = await start_http(cfg, app, state_dir)
    try:
        if started is not None:
            started(port)
        await asyncio.get_running_loop().create_future()
    finally:
        await server.cleanup()
