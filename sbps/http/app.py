"""The aiohttp application: the one route table, the public handlers, and starting it.

Owns ``make_app(deps)`` (the factory the daemon calls), the route table (admin routes are
wrapped with the bearer-token check here, in one place), the thin public handlers
(health, catalog, target, boot parameters, metrics, the OpenAPI document), conditional
requests and long polls, and ``start_http``/``run_http`` (listening, TLS). Must not hold
state of its own: everything comes from ``HttpDeps``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from sbps.config import HttpConfig
from sbps.errors import ConfigError
from sbps.http import admin, bootdoc, catalog
from sbps.http.auth import admin as guarded
from sbps.http.auth import is_admin
from sbps.http.deps import DEPS, SPEC, HttpDeps
from sbps.http.errors import ApiError, json_errors
from sbps.http.source import Rendered, Status

log = logging.getLogger(__name__)

MAX_WAIT = 300.0
URL_FILE = "http-url"
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
    body = {"status": "failing" if bad else "ok", "tasks": tasks}
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
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[DEPS] = deps
    app[admin.NOTIFY_LIMIT] = admin.NotifyLimiter()
    app[SPEC] = resources.files("sbps.http").joinpath("openapi.yaml").read_bytes()
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
        web.post("/v1/notify/{secret}", admin.post_notify),
        web.post("/v1/images/{key}/{action}", adm(admin.image_action)),
        web.get("/debug/state", adm(admin.debug_state), allow_head=False),
        web.get("/debug/plan", adm(admin.debug_plan), allow_head=False),
        web.get("/debug/config", adm(admin.debug_config), allow_head=False),
        web.get("/debug/tasks", adm(admin.debug_tasks), allow_head=False),
        web.put("/debug/loglevel", adm(admin.put_loglevel)),
    ])
    return app


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


async def start_http(cfg: HttpConfig, app: web.Application,
                     state_dir: str | None = None) -> tuple[web.AppRunner, int]:
    """Listen on ``http.bind``/``http.port`` (port 0 picks one); returns the runner (clean
    up with ``await runner.cleanup()``) and the bound port. With ``state_dir``, the URL is
    written to ``<state_dir>/http-url`` for sbpsctl."""
    ctx = tls_context(cfg)
    if ctx is None and not _loopback(cfg.bind):
        log.warning("the HTTP API listens on %s without TLS; set http.tls_cert_file and "
                    "http.tls_key_file", cfg.bind)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.bind, cfg.port, ssl_context=ctx, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError("http.port", f"{cfg.bind}:{cfg.port}",
                          f"cannot listen: {exc.strerror}") from exc
    port = int(runner.addresses[0][1])
    url = url_of(cfg, port, ctx is not None)
    log.info("HTTP API listening on %s", url, extra={"port": port})
    if state_dir:
        _write_url(Path(state_dir) / URL_FILE, url)
    return runner, port


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
    runner, port = await start_http(cfg, app, state_dir)
    try:
        if started is not None:
            started(port)
        await asyncio.get_running_loop().create_future()
    finally:
        await runner.cleanup()
