"""Admin endpoints: /debug/*, POST /v1/reconcile and the image hold/release/retire-now.

Owns these handlers and the generic JSON rendering of internal dataclasses for /debug.
Every handler here is registered behind the bearer token (``auth.admin``) by the route
table in app.py. Must not change the world except through the reconciler's documented
levers: ``trigger()`` and the lifecycle's ``held``/``forced`` sets.
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
from sbps.core.model import ImageState
from sbps.publish.http.auth import raw_bytes
from sbps.publish.http.catalog import iso
from sbps.publish.http.deps import DEPS, HttpDeps
from sbps.publish.http.errors import ApiError
from sbps.publish.http.throttle import FailureThrottle
from sbps.reconcile.apply import Report

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
    lc = deps.control.lifecycle
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
        "held": sorted(lc.held), "forced": sorted(lc.forced),
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


def _known(deps: HttpDeps, key: str) -> ImageState | None:
    if not _KEY_RE.match(key):
        raise ApiError(400, "invalid_parameter", "an image key is the 15 hex digits of its "
                       "product id", field="key")
    found = deps.control.lifecycle.get(key)
    if found is not None:
        return found.state
    for s in deps.control.status.images:
        if s.name == key:
            return s.state
    target = deps.control.status.target
    if target is not None and any(so.name == key for so in target.storage_objects):
        return None
    raise ApiError(404, "not_found", f"no image with key {key!r} on this worker", field="key")


async def image_action(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key, action = request.match_info["key"], request.match_info["action"]
    if action == "promote":
        return await _promote(request, deps, key)
    state = _known(deps, key)
    lc = deps.control.lifecycle
    if action == "hold":
        lc.held.add(key)
    elif action == "release":
        lc.held.discard(key)
    elif action == "retire-now":
        if state is not ImageState.RETIRING:
            now = state.value if state else "untracked"
            raise ApiError(409, "conflict", f"image {key} is {now}, not retiring: only a "
                           "retiring image can be retired now", field="key")
        if key in lc.held:
            raise ApiError(409, "conflict", f"image {key} is held; release it first",
                           field="key")
        lc.forced.add(key)
    else:
        raise ApiError(404, "not_found", f"unknown image action {action!r}", field="action")
    log.warning("image %s: %s requested through the API", key, action,
                extra={"backstore": key, "action": action, "peer": request.remote})
    number = deps.control.trigger(f"{action} {key} requested through the API")
    return _json({"key": key, "action": action, "held": key in lc.held,
                  "forced": key in lc.forced, "pass": number}, status=202)


async def _promote(request: web.Request, deps: HttpDeps, key: str) -> web.Response:
    """The promote lever: the reconciler resolves the key among desired images."""
    if not _KEY_RE.match(key):
        raise ApiError(400, "invalid_parameter", "an image key is the 15 hex digits of its "
                       "product id", field="key")
    img = await deps.control.promote(key)
    log.warning("image %s: promoted to etag %s through the API", key, img.source.etag,
                extra={"backstore": key, "action": "promote", "peer": request.remote})
    return _json({"key": key, "action": "promote", "etag": img.source.etag,
                  "pass": deps.control.status.passes + 1}, status=202)


async def post_drain(request: web.Request) -> web.Response:
    """Close (``?on=1``, default) or reopen (``?on=0``) this worker by hand; with ``?wait=1``
    answer once DNS is withdrawn and the target disabled. Lists connected initiators."""
    deps = request.app[DEPS]
    on = _bool_param(request, "on") if "on" in request.query else True
    deps.control.drain(on)
    number = deps.control.trigger("drain " + ("on" if on else "off"))
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
