"""Development FAKE of the Cray IMS image API (v3 image records only), for tests and demos.

This is not IMS. It serves the published IMS v3 shapes for image records under both
``/v3`` and ``/apis/ims/v3`` so the catalog, the reconciler and the image builder can be
exercised on loopback: list, create, get, patch (link, arch, metadata set/remove) and soft
delete (``/v3/deleted/images``), with problem+json errors. Records loaded with ``--load`` are
stored and returned verbatim, odd shapes included, because the field has such records.
For tests it is also a fault injector: ``POST /__dev/faults`` (a status, a delay, a garbage
body, ``body_base64``: these raw bytes as a 200 answer, or ``list_extra``: raw text, such as
a record nested 100,000 deep, appended as one more item of the next ``count`` image lists)
and ``GET /__dev/requests``.

It binds 127.0.0.1 only, keeps its state in one JSON file (atomic replace), and must not
grow into a second implementation of IMS: no jobs, recipes, keys or S3 side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from ims_dev.store import Dev, Store, apply_metadata, check_link, now, problem

PREFIXES = ("/v3", "/apis/ims/v3")
ARCHES = ("x86_64", "aarch64")
PATCH_FIELDS = {"link", "arch", "metadata"}
Handler = Any


STORE = web.AppKey("store", Store)
DEV = web.AppKey("dev", Dev)
TOKEN = web.AppKey("token", str)


def is_api(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


@web.middleware
async def dev_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    if not is_api(request.path):
        return await handler(request)  # type: ignore[no-any-return]
    dev = app[DEV]
    dev.requests[f"{request.method} {request.path}"] += 1
    listing = request.method == "GET" and request.path in (p + "/images" for p in PREFIXES)
    if dev.faults and (listing or "list_extra" not in dev.faults[0]):
        fault = dev.faults[0]
        fault["count"] -= 1
        if fault["count"] <= 0:
            dev.faults.pop(0)
        if fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        elif fault.get("body_base64") is not None:
            return web.Response(status=200, body=base64.b64decode(fault["body_base64"]),
                                content_type="application/json")
        elif fault.get("garbage"):
            return web.Response(status=200, text='{"id": "trunc', content_type="application/json")
        elif fault.get("status"):
            status = int(fault["status"])
            return problem(status, "Injected fault", "fault injected by the dev server")
        elif isinstance(fault.get("list_extra"), str):
            return with_extra(await list_images(request), fault["list_extra"])
    token = app[TOKEN]
    if token:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return problem(401, "Unauthorized", "missing or invalid bearer token")
    return await handler(request)  # type: ignore[no-any-return]


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def record_or_404(store: dict[str, Any], request: web.Request) -> Any:
    rec = store.get(request.match_info["image_id"])
    if rec is None:
        raise web.HTTPNotFound(
            text=json.dumps({"type": "about:blank", "title": "Not Found", "status": 404,
                             "detail": f"No image record exists with id "
                                       f"{request.match_info['image_id']}"}),
            content_type="application/problem+json")
    return rec


async def list_images(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STORE].images.values()))


async def create_image(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not body:
        return problem(400, "No input provided", "a JSON object is required")
    if not isinstance(body.get("name"), str) or not body["name"]:
        return problem(422, "Unprocessable Entity", "name is required and must be a string")
    arch = body.get("arch", "x86_64")
    if arch not in ARCHES:
        return problem(422, "Unprocessable Entity", f"arch must be one of {ARCHES}")
    why = check_link(body.get("link"))
    if why:
        return problem(422, "Unprocessable Entity", why)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        return problem(422, "Unprocessable Entity", "metadata must be an object")
    rec: dict[str, Any] = {"id": str(uuid.uuid4()), "created": now(), "name": body["name"],
                           "arch": arch, "metadata": metadata}
    if "link" in body:
        rec["link"] = body["link"]
    request.app[STORE].insert(rec)
    return web.json_response(rec, status=201)


async def get_image(request: web.Request) -> web.Response:
    return web.json_response(record_or_404(request.app[STORE].images, request))


async def patch_image(request: web.Request) -> web.Response:
    store = request.app[STORE]
    rec = record_or_404(store.images, request)
    body = await read_json(request)
    if not isinstance(body, dict) or not body:
        return problem(400, "No input provided", "a JSON object is required")
    unknown = set(body) - PATCH_FIELDS
    if unknown:
        return problem(422, "Unprocessable Entity", f"fields not patchable: {sorted(unknown)}")
    if "arch" in body and body["arch"] not in ARCHES:
        return problem(422, "Unprocessable Entity", f"arch must be one of {ARCHES}")
    if "link" in body and (why := check_link(body["link"])):
        return problem(422, "Unprocessable Entity", why)
    new = dict(rec)
    if "metadata" in body and (why := apply_metadata(new, body["metadata"])):
        return problem(400, "Bad Request", why)
    new.update({k: body[k] for k in ("link", "arch") if k in body})
    store.images[request.match_info["image_id"]] = new
    store.save()
    return web.json_response(new)


async def delete_image(request: web.Request) -> web.Response:
    store = request.app[STORE]
    rec = record_or_404(store.images, request)
    image_id = request.match_info["image_id"]
    del store.images[image_id]
    store.deleted[image_id] = {**rec, "deleted": now()} if isinstance(rec, dict) else rec
    store.save()
    return web.Response(status=204)


async def list_deleted(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STORE].deleted.values()))


async def get_deleted(request: web.Request) -> web.Response:
    return web.json_response(record_or_404(request.app[STORE].deleted, request))


def with_extra(resp: web.Response, extra: str) -> web.Response:
    text = (resp.text or "[]").rstrip()
    head = text[:-1].rstrip()
    body = f"{head}{', ' if head != '[' else ''}{extra}]"
    return web.Response(status=200, text=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def post_faults(request: web.Request) -> web.Response:
    body = await read_json(request)
    kinds = ("status", "delay", "garbage", "body_base64", "list_extra")
    if not isinstance(body, dict) or not any(k in body for k in kinds):
        return problem(400, "Bad Request",
                       "expected {status|delay|garbage|body_base64|list_extra, count}")
    count = body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        return problem(400, "Bad Request", "count must be a positive integer")
    request.app[DEV].faults.append({**body, "count": count})
    return web.json_response({"queued": len(request.app[DEV].faults)})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[DEV].faults.clear()
    return web.Response(status=204)


async def get_requests(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[DEV].requests))


def make_app(store: Store, token: str = "") -> web.Application:
    app = web.Application(middlewares=[dev_middleware])
    app[STORE], app[DEV], app[TOKEN] = store, Dev(), token
    routes = [web.get("/healthz", healthz), web.post("/__dev/faults", post_faults),
              web.delete("/__dev/faults", clear_faults),
              web.get("/__dev/requests", get_requests)]
    for p in PREFIXES:
        routes += [
            web.get(f"{p}/images", list_images), web.post(f"{p}/images", create_image),
            web.get(f"{p}/images/{{image_id}}", get_image),
            web.patch(f"{p}/images/{{image_id}}", patch_image),
            web.delete(f"{p}/images/{{image_id}}", delete_image),
            web.get(f"{p}/deleted/images", list_deleted),
            web.get(f"{p}/deleted/images/{{image_id}}", get_deleted),
        ]
    app.add_routes(routes)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Development FAKE of the Cray IMS v3 image API (not IMS; for tests and "
                    "demos). Listens on 127.0.0.1 only.")
    ap.add_argument("--host", default="127.0.0.1", help="must be 127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--state", type=Path, help="JSON state file (loaded if present)")
    ap.add_argument("--token-file", type=Path, help="require 'Authorization: Bearer <file>'")
    ap.add_argument("--load", type=Path, action="append", default=[],
                    help="JSON list of raw image records, inserted verbatim")
    args = ap.parse_args(argv)
    if args.host != "127.0.0.1":
        ap.error(f"--host {args.host}: this development fake binds 127.0.0.1 only")
    return args


async def serve(args: argparse.Namespace) -> None:
    token = args.token_file.read_text(encoding="utf-8").strip() if args.token_file else ""
    store = Store(args.state)
    for path in args.load:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise SystemExit(f"--load {path}: expected a JSON list of records")
        for rec in records:
            store.insert(rec, save=False)
    store.save()
    runner = web.AppRunner(make_app(store, token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        port = runner.addresses[0][1]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
