"""JSON errors of the HTTP API: ``{"error": {"code", "message", "field"}}``.

Owns the error envelope and the middleware that turns every failure into it: our own
``ApiError``, aiohttp's HTTP exceptions (404, 405...) and, as a last resort, unexpected
exceptions, which are logged with their traceback here and reach the client only as a
short message. Every message is scrubbed of URLs (``scheme://...``: the IMS endpoint, an S3
object) before it leaves, whichever component wrote it. Must not leak stack traces,
exception text of unexpected errors, or internal URLs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from sbps.core.errors import PermanentError, SbpsError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]*")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
          413: "too_large", 415: "unsupported_media_type", 429: "too_many_requests",
          503: "unavailable"}


class ApiError(PermanentError):
    """A request the API refuses: HTTP ``status``, stable ``code``, the offending ``field``
    (a parameter, header or body key) when there is one."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.field = field
        self.headers = dict(headers or {})


def scrub(message: str) -> str:
    """``message`` with every URL replaced by ``<url>``: an error body is read by anyone
    who can reach the port, and names no upstream endpoint or object."""
    return _URL_RE.sub("<url>", message)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": scrub(message), "field": field}}
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json", headers=headers)


def from_sbps_error(exc: SbpsError, field: str | None = None) -> ApiError:
    """Map an error raised by a component the API called (bootparams...)."""
    if isinstance(exc, ApiError):
        return exc
    status = 503 if exc.temporary else 422
    return ApiError(status, exc.code, str(exc), field=getattr(exc, "field", field))


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
        return error_response(exc.status, _CODES.get(exc.status, "http_error"), exc.reason,
                              None, keep)
    except SbpsError as exc:
        err = from_sbps_error(exc)
        return error_response(err.status, err.code, err.message, err.field)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path,
                      extra={"path": request.path})
        return error_response(500, "internal", "internal error; the daemon log has details")
