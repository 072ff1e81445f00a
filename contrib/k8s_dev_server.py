#!/usr/bin/env python3
"""Development FAKE of the Kubernetes node API, for testing the k8s-label node gate.

Not Kubernetes: it serves only ``GET /api/v1/nodes/{name}`` (the shape sbps reads:
``metadata.labels``), over TLS with a bearer token or, with ``--client-ca``, a client
certificate that CA signed (as kubeadm's admin.conf authenticates), like the real API
server. Labels are
changed through ``POST /__dev/label`` with ``{"node", "key", "value"}`` (``value`` null
removes the label). Binds 127.0.0.1 only and prints ``listening on https://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

NODES = web.AppKey("nodes", dict)
TOKEN = web.AppKey("token", str)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.json_response(body, status=code)


@web.middleware
async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        tls = request.transport.get_extra_info("ssl_object") if request.transport else None
        if tls is not None and tls.getpeercert():  # verified against --client-ca
            return await handler(request)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
            return _status(401, "Unauthorized", "Unauthorized")
    return await handler(request)


async def get_node(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    labels = request.app[NODES].get(name)
    if labels is None:
        return _status(404, "NotFound", f'nodes "{name}" not found')
    return web.json_response({"kind": "Node", "apiVersion": "v1",
                              "metadata": {"name": name, "labels": dict(labels)}})


async def set_label(request: web.Request) -> web.Response:
    body = await request.json()
    labels = request.app[NODES].setdefault(str(body["node"]), {})
    if body.get("value") is None:
        labels.pop(str(body["key"]), None)
    else:
        labels[str(body["key"])] = str(body["value"])
    return web.json_response({"node": body["node"], "labels": labels})


def make_app(token: str, nodes: list[str]) -> web.Application:
    app = web.Application(middlewares=[auth])
    app[TOKEN] = token
    app[NODES] = {n: {"kubernetes.io/hostname": n} for n in nodes}
    app.router.add_get("/api/v1/nodes/{name}", get_node)
    app.router.add_post("/__dev/label", set_label)
    return app


async def serve(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    runner = web.AppRunner(make_app(Path(args.token_file).read_text().strip(), args.node))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on https://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--client-ca", help="CA whose client certificates are accepted")
    p.add_argument("--node", action="append", default=[], help="a node name (repeatable)")
    args = p.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
