"""The admin bearer token: where it comes from, how it is created, how it is checked.

Owns the token file (``http.admin_token_file``, or ``<reconcile.state_dir>/admin-token``
created at start with mode 0600, atomically) and the constant-time check. Admin endpoints
always require the token, loopback included: on Kubernetes workers host-network pods reach
127.0.0.1 too. Must never log the token.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path

from aiohttp import web

from sbps.config import HttpConfig
from sbps.core.errors import ConfigError
from sbps.publish.http.errors import ApiError

log = logging.getLogger(__name__)

TOKEN_NAME = "admin-token"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sbps"'}


def token_path(cfg: HttpConfig, state_dir: str) -> Path:
    """The file holding the admin token (sbpsctl reads the same one)."""
    return Path(cfg.admin_token_file) if cfg.admin_token_file else Path(state_dir) / TOKEN_NAME


def load_or_create_token(cfg: HttpConfig, state_dir: str) -> str:
    """Read the configured token file; with none configured, reuse or create the default."""
    path = token_path(cfg, state_dir)
    if cfg.admin_token_file:
        return _read(path, "http.admin_token_file")
    if not path.exists():
        _create(path)
        log.info("created the admin token file %s (mode 0600)", path)
    else:
        _tighten(path)
    return _read(path, "reconcile.state_dir")


def _tighten(path: Path) -> None:
    """The default token file is the daemon's own: it is 0600 whatever happened to it."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode != 0o600:
            os.chmod(path, 0o600)
            log.warning("the admin token file %s had mode %o: set to 0600", path, mode)
    except OSError as exc:
        raise ConfigError("reconcile.state_dir", str(path), "cannot set the admin token "
                          f"file to mode 0600: {exc.strerror}") from exc


def read_token(path: Path, key: str = "http.admin_token_file") -> str:
    return _read(path, key)


def _read(path: Path, key: str) -> str:
    try:
        st = path.stat()
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read the admin token file: "
                          f"{exc.strerror}") from exc
    if not token:
        raise ConfigError(key, str(path), "the admin token file is empty")
    if st.st_mode & 0o077:
        log.warning("the admin token file %s is readable by group or others (mode %o)",
                    path, st.st_mode & 0o777)
    return token


def _create(path: Path) -> None:
    """Write a fresh token to a temporary name, fsync, rename: never a partial file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError("reconcile.state_dir", str(path.parent),
                          f"cannot create the admin token file: {exc.strerror}") from exc


def raw_bytes(value: str) -> bytes | None:
    """A header or path value as the bytes the client sent (aiohttp keeps bytes that are
    not UTF-8 as surrogates); None if it cannot be turned back into bytes."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _bearer(request: web.Request) -> bytes | None:
    """The bearer credential as bytes; None without one (or with one no token can be)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return raw_bytes(value.strip())


def check(request: web.Request, token: str) -> None:
    given = _bearer(request)
    if given is None:
        raise ApiError(401, "unauthorized", "this endpoint requires Authorization: Bearer "
                       "<admin token>", field="Authorization", headers=_CHALLENGE)
    if not hmac.compare_digest(given, token.encode()):
        log.warning("admin request with a wrong token refused",
                    extra={"path": request.path, "peer": request.remote})
        raise ApiError(401, "unauthorized", "the admin token is wrong",
                       field="Authorization", headers=_CHALLENGE)


def is_admin(request: web.Request, token: str) -> bool:
    """Whether the request carries the right admin token (no error, no log otherwise)."""
    given = _bearer(request)
    return given is not None and hmac.compare_digest(given, token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admin(token_of: Callable[[web.Request], str]) -> Callable[[Handler], Handler]:
    """Decorate a handler so it runs only with the right bearer token."""
    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            check(request, token_of(request))
            return await handler(request)
        return guarded
    return wrap
