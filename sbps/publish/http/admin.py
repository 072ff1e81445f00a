"""Admin endpoints: /debug/*, POST /v1/reconcile and the image hold/release/retire-now.

Owns these handlers and the generic JSON rendering of internal dataclasses for /debug.
Every handler here is registered behind the bearer token (``auth.admin``) by the route
table in app.py. Must not change the world except through the reconciler's commands
(``deps.Control``: trigger, hold, release, retire_now, promote, drain); it never touches
the lifecycle or any other part of the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hmac
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sbps.core.actions import Action, Plan
from sbps.core.errors import InputError
from sbps.publish.http.auth import raw_bytes
from sbps.publish.http.catalog import iso
from sbps.publish.http.deps import DEPS, HttpDeps
from sbps.publish.http.errors import ApiError
from sbps.publish.http.throttle import FailureThrottle
from sbps.reconcile.apply import Report
from sbps.reconcile.commands import ImageAction, Lever

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error")
_KEY_RE = re.compile(r"^[0-9a-f]{15}$")


def jsonable(obj: Any) -> Any:
    """Dataclasses, enums and sets as plain JSON values (actions keep their kind)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, Action):
            out["kind"] = obj.kind
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (frozenset, set)):
        return sorted((jsonable(v) for v in obj), key=str)
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def plan_doc(plan: Plan) -> dict[str, Any]:
    return {"actions": [jsonable(a) for a in plan.actions],
            "notes": [jsonable(n) for n in plan.notes]}


def report_doc(report: Report) -> dict[str, Any]:
    return {"results": [{"kind": r.action.kind, "subject": r.action.subject,
                         "reason": r.action.reason, "ok": r.ok, "skipped": r.skipped,
                         "code": r.code, "message": r.message,
                         "seconds": round(r.seconds, 6)} for r in report.results],
            "failed": len(report.failed), "target_writes": report.target_writes}


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "0")
    if raw in ("1", "true"):
        return True
    if raw in ("0", "false"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be 0 or 1", field=name)


async def debug_state(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    st = await deps.control.refresh_counters()
    claims: Mapping[str, int] | None = None
    if deps.claims_held is not None:
        claims = await asyncio.get_running_loop().run_in_executor(None, deps.claims_held)
    levers = deps.control.levers()
    return _json({
        "iqn": st.iqn, "backend": st.backend, "passes": st.passes,
        "last_pass_at": iso(st.last_pass_at), "last_pass_seconds": st.last_pass_seconds,
        "last_success_at": iso(st.last_success_at), "ready": st.ready,
        "gate_open": st.gate_open, "serving": st.serving, "dns_registered": st.dns_registered,
        "degraded": list(st.degraded), "errors": list(st.errors),
        "desired": jsonable(st.images), "actual": jsonable(st.target),
        "stats": jsonable(st.stats), "stats_at": iso(st.stats_at),
        "problems": jsonable(st.problems), "notes": jsonable(st.notes),
        "last_plan": plan_doc(st.last_plan),
        "last_report": report_doc(st.last_report),
        "held": sorted(levers.held), "forced": sorted(levers.forced),
        "claims": dict(claims) if claims is not None else None,
    })


async def debug_plan(request: web.Request) -> web.Response:
    plan = await request.app[DEPS].control.dry_run()
    return _json(plan_doc(plan))


async def debug_config(request: web.Request) -> web.Response:
    return _json(jsonable(request.app[DEPS].config))


async def debug_tasks(request: web.Request) -> web.Response:
    return _json({"tasks": request.app[DEPS].tasks()})


async def put_loglevel(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_body", "the body must be JSON: {\"level\": ...}",
                       field="body") from exc
    if not isinstance(body, dict) or set(body) - {"level"}:
        raise ApiError(400, "invalid_body", "the body must be {\"level\": ...} and nothing "
                       "else", field="body")
    level = body.get("level")
    if level not in LEVELS:
        raise ApiError(400, "invalid_parameter", "level must be one of " + ", ".join(LEVELS),
                       field="level")
    request.app[DEPS].set_log_level(level)
    log.warning("log level set to %s through the API", level, extra={"peer": request.remote})
    return _json({"level": level})


async def post_reconcile(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    wait = _bool_param(request, "wait")
    number = deps.control.trigger("requested through POST /v1/reconcile")
    if not wait:
        return _json({"pass": number, "finished": False}, status=202)
    st = await deps.control.wait_for_pass(number)
    return _json({"pass": st.passes, "finished": True, "ok": not st.errors and
                  not st.last_report.failed, "errors": list(st.errors),
                  "report": report_doc(st.last_report)})


#: HTTP status of a refused image command, by its InputError code.
_REFUSED = {"not_found": 404, "conflict": 409}


def _key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ApiError(400, "invalid_parameter", "an image key is the 15 hex digits of its "
                       "product id", field="key")
    return key


async def image_action(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key, name = request.match_info["key"], request.match_info["action"]
    try:
        action = ImageAction(name)
    except ValueError:
        action = None
    if action is ImageAction.PROMOTE:
        return await _promote(request, deps, _key(key))
    _key(key)
    if action is None:
        raise ApiError(404, "not_found", f"unknown image action {name!r}", field="action")
    command = {ImageAction.HOLD: deps.control.hold, ImageAction.RELEASE: deps.control.release,
               ImageAction.RETIRE_NOW: deps.control.retire_now}[action]
    try:
        lever: Lever = command(key)
    except InputError as exc:
        if exc.code not in _REFUSED:
            raise
        raise ApiError(_REFUSED[exc.code], exc.code, exc.reason, field="key") from exc
    log.warning("image %s: %s requested through the API", key, action.value,
                extra={"backstore": key, "action": action.value, "peer": request.remote})
    return _json({"key": key, "action": action.value, "held": lever.held,
                  "forced": lever.forced, "pass": lever.pass_number}, status=202)


async def _promote(request: web.Request, deps: HttpDeps, key: str) -> web.Response:
    """The promote command: the reconciler resolves the key among desired images."""
    lever = await deps.control.promote(key)
    log.warning("image %s: promoted to etag %s through the API", key, lever.etag,
                extra={"backstore": key, "action": "promote", "peer": request.remote})
    return _json({"key": key, "action": "promote", "etag": lever.etag,
                  "pass": lever.pass_number}, status=202)


async def post_drain(request: web.Request) -> web.Response:
    """Close (``?on=1``, default) or reopen (``?on=0``) this worker by hand; with ``?wait=1``
    answer once DNS is withdrawn and the target disabled. Lists connected initiators."""
    deps = request.app[DEPS]
    on = _bool_param(request, "on") if "on" in request.query else True
    number = deps.control.drain(on)
    st = deps.control.status
    if _bool_param(request, "wait"):
        st = await deps.control.wait_for_pass(number)
        while on and st.serving:
            st = await deps.control.wait_for_pass(st.passes + 1)
    sessions = await deps.control.sessions()
    return _json({"drained": on, "serving": st.serving, "dns_registered": st.dns_registered,
                  "pass": number, "sessions": list(sessions)}, status=200)


class NotifyLimiter:
    """At most one pass scheduled per ``interval`` seconds from bucket notifications."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = -interval

    def allow(self, now: float) -> bool:
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


NOTIFY_LIMIT = web.AppKey("sbps_notify_limit", NotifyLimiter)
NOTIFY_THROTTLE = web.AppKey("sbps_notify_throttle", FailureThrottle)


async def post_notify(request: web.Request) -> web.Response:
    """Ceph RGW bucket notifications: only schedule a pass. The payload is never read or
    trusted; the shared secret in the path is the only credential RGW can send. Wrong
    guesses are throttled per address and overall (429 before any comparison)."""
    deps = request.app[DEPS]
    secret = deps.notify_secret
    if not secret:
        raise ApiError(404, "not_found", "no such endpoint")
    throttle = request.app[NOTIFY_THROTTLE]
    now = asyncio.get_running_loop().time()
    peer = request.remote or "unknown"
    if not throttle.admit(peer, now):
        raise ApiError(429, "too_many_requests", "too many wrong attempts; retry later",
                       headers={"Retry-After": "10"})
    given = raw_bytes(request.match_info["secret"])
    if given is None or not hmac.compare_digest(given, secret.encode()):
        throttle.failed(peer, now)
        raise ApiError(404, "not_found", "no such endpoint")
    limiter = request.app[NOTIFY_LIMIT]
    scheduled = limiter.allow(now)
    if scheduled:
        deps.control.trigger("S3 bucket notification")
    return _json({"scheduled": scheduled}, status=202)
