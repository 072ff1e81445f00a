"""The aiohttp application: the one route table and the public handlers.

Owns ``make_app(deps)`` (the factory the daemon calls), the route table (admin routes are
wrapped with the bearer-token check here, in one place), the thin public handlers
(health, catalog, target, boot parameters, metrics, the OpenAPI document), conditional
requests and long polls (each in a slot of ``deps.limits``). Listening and TLS are in
serve.py. Must not hold state of its own: everything comes from ``HttpDeps``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from sbps import __version__
from sbps.publish.http import admin, bootdoc, catalog, operator
from sbps.publish.http.auth import admin as guarded
from sbps.publish.http.auth import is_admin
from sbps.publish.http.deps import DEPS, SPEC, HttpDeps
from sbps.publish.http.errors import ApiError, json_errors
from sbps.publish.http.guard import GUARD, ConnectionGuard
from sbps.publish.http.source import Rendered, Status
from sbps.publish.http.throttle import FailureThrottle

log = logging.getLogger(__name__)

MAX_WAIT = 300.0
NETWORKS = ("hsn", "nmn")


# Conditional GETs and long polls ------------------------------------------------------

def _matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _wait_param(request: web.Request) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:
        raise ApiError(400, "invalid_parameter", f"wait must be 0 to {MAX_WAIT:.0f} seconds",
                       field="wait")
    if wait and request.headers.get("If-None-Match", "*").strip() == "*":
        raise ApiError(400, "missing_header", "a long poll (?wait) needs If-None-Match with "
                       "the ETag the client has (not *)", field="If-None-Match")
    return wait


def _send(doc: Rendered) -> web.Response:
    return web.Response(body=doc.body, content_type="application/json",
                        headers={"ETag": doc.etag, "Cache-Control": "no-cache"})


def _not_modified(etag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})


async def _conditional(request: web.Request, name: str,
                       build: Callable[[Status], Rendered]) -> web.Response:
    source = request.app[DEPS].source
    wait = _wait_param(request)
    doc = source.render(name, build)
    if not doc.found:
        raise ApiError(404, "not_found", f"no image with key or IMS id "
                       f"{request.match_info.get('id', '')!r} in the catalog", field="id")
    inm = request.headers.get("If-None-Match")
    if inm is None or not _matches(inm, doc.etag):
        return _send(doc)
    if wait:
        with request.app[DEPS].limits.long_poll():
            changed = await source.wait_changed(name, build, doc.etag, wait)
        if changed is not None:
            return _send(changed)
    return _not_modified(doc.etag)


# Public handlers ----------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    tasks = request.app[DEPS].tasks()
    # A one-shot task (the start-up rehash) that finished is "done" and healthy; a
    # long-lived task that ends stops the daemon, so only failures count here.
    bad = [t for t in tasks if t.get("state") in ("failed", "cancelled")]
    body = {"status": "failing" if bad else "ok", "version": __version__, "tasks": tasks}
    return web.json_response(body, status=503 if bad else 200)


async def readyz(request: web.Request) -> web.Response:
    st = request.app[DEPS].source.snapshot()
    reasons = []
    if not st.passes or not st.ready:
        reasons.append("the first reconcile pass has not finished")
    if not st.gate_open:
        reasons.append("the node gate is closed")
    if st.target is None or not st.target.tpg_enabled:
        reasons.append("the target portal group is not enabled")
    refused = request.app[DEPS].store_refused
    if refused is not None and (why := refused()):
        # Exports keep serving; no new LUN id can be agreed until the bucket is fixed.
        reasons.append(f"no LUN ids can be claimed: {why}")
    return web.json_response({"ready": not reasons, "reasons": reasons},
                             status=503 if reasons else 200)


def _viewer(request: web.Request) -> tuple[str, catalog.Keep | None]:
    """With access control on, an initiator sees only its images: it names itself with
    ``?initiator=IQN`` (or ``X-SBPS-Initiator``); the admin token sees everything. This is
    a view for clients, not a security boundary: the target's ACLs and CHAP are."""
    deps = request.app[DEPS]
    allowed = deps.allowed
    if allowed is None or is_admin(request, deps.token):
        return "", None
    who = request.query.get("initiator") or request.headers.get("X-SBPS-Initiator") or None
    return f"@{who or ''}", lambda tenant: allowed(tenant, who)


async def images(request: web.Request) -> web.Response:
    view, keep = _viewer(request)

    def build(status: Status) -> Rendered:
        return Rendered.of(catalog.encode(catalog.catalog(status, keep=keep)))

    return await _conditional(request, f"catalog{view}", build)


async def image(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    view, keep = _viewer(request)

    def build(status: Status) -> Rendered:
        doc = catalog.catalog(status, match=ident, keep=keep)
        return Rendered.of(catalog.encode(doc), found=bool(doc["images"]))

    return await _conditional(request, f"image:{ident}{view}", build)


async def target(request: web.Request) -> web.Response:
    return await _conditional(request, "target",
                              lambda st: Rendered.of(catalog.encode(catalog.target(st))))


async def bootparams(request: web.Request) -> web.Response:
    """From the snapshot only (``bootdoc``): no IMS or S3 request, whatever the id."""
    deps = request.app[DEPS]
    network = request.query.get("network", "hsn")
    if network not in NETWORKS:
        raise ApiError(400, "invalid_parameter", "network must be hsn or nmn", field="network")
    if deps.boot is None:
        raise ApiError(503, "unavailable", "boot parameters are not available on this worker "
                       "(node.system_name and node.site_domain are not set)")
    doc = bootdoc.document(deps.source.snapshot(), request.match_info["ims_id"], network,
                           deps.boot)
    if doc is None:
        raise ApiError(404, "not_found", "no image with this IMS id in the catalog",
                       field="ims_id")
    return web.json_response(doc)


async def metrics(request: web.Request) -> web.Response:
    encoder, ctype = choose_encoder(request.headers.get("Accept", ""))
    deps = request.app[DEPS]
    await deps.control.refresh_counters()  # a scrape reads the LUN counters of now
    body = encoder(deps.registry)
    return web.Response(body=body, headers={"Content-Type": ctype})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC], content_type="application/yaml")


# The app ------------------------------------------------------------------------------

def _token(request: web.Request) -> str:
    return request.app[DEPS].token


def make_app(deps: HttpDeps) -> web.Application:
    """The API application; the daemon starts it with ``start_http`` or ``run_http``."""
    guard = ConnectionGuard(deps.limits)
    app = web.Application(middlewares=[guard.middleware, json_errors],
                          client_max_size=64 * 1024)
    app[DEPS] = deps
    app[GUARD] = guard
    app[admin.NOTIFY_LIMIT] = admin.NotifyLimiter()
    app[admin.NOTIFY_THROTTLE] = FailureThrottle(deps.limits.notify_rejected)
    app[SPEC] = resources.files("sbps.publish.http").joinpath("openapi.yaml").read_bytes()
    adm = guarded(_token)
    app.router.add_routes([
        web.get("/healthz", healthz, allow_head=False),
        web.get("/readyz", readyz, allow_head=False),
        web.get("/openapi.yaml", openapi, allow_head=False),
        web.get("/v1/images", images, allow_head=False),
        web.get("/v1/images/{id}", image, allow_head=False),
        web.get("/v1/target", target, allow_head=False),
        web.get("/v1/bootparams/{ims_id}", bootparams, allow_head=False),
        web.get("/metrics", metrics, allow_head=False),
        web.post("/v1/reconcile", adm(admin.post_reconcile)),
        web.post("/v1/drain", adm(admin.post_drain)),
        web.get("/v1/sessions", adm(operator.get_sessions), allow_head=False),
        web.get("/v1/why/{image}", adm(operator.get_why), allow_head=False),
        web.post("/v1/notify/{secret}", admin.post_notify),
        web.post("/v1/images/{key}/{action}", adm(admin.image_action)),
        web.get("/debug/state", adm(admin.debug_state), allow_head=False),
        web.get("/debug/plan", adm(admin.debug_plan), allow_head=False),
        web.get("/debug/config", adm(admin.debug_config), allow_head=False),
        web.get("/debug/tasks", adm(admin.debug_tasks), allow_head=False),
        web.put("/debug/loglevel", adm(admin.put_loglevel)),
    ])
    return app
