"""Benchmark of GET /v1/images (not a test): 255 images, 256 concurrent loopback clients.

Measures, in one run and the same way, an aiohttp hello-world handler (the baseline), the
catalog on the 304 path (If-None-Match matches) and on the full path (200 with the whole
catalog). Each server runs alone in its own process; the clients run in this process with
256 concurrent connections, first closed-loop (throughput), then paced at half the
hello-world throughput (latency without client-side queueing). Goal: the 304 path reaches
>= 0.5x the hello-world throughput, with p99 < 50 ms. Usage: python perf/bench_http.py [--requests-per-client N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Measurement, Result, add_json_arg, emit

from sbps.config import HttpConfig
from sbps.core import identity
from sbps.core.actions import Plan
from sbps.core.model import Arch, DesiredImage, ImageKind, ImageState, ObjectInfo, S3Url
from sbps.core.target_state import Lun, Portal, StorageObject, TargetState
from sbps.publish.http.app import make_app
from sbps.publish.http.deps import HttpDeps
from sbps.publish.http.serve import start_http
from sbps.publish.http.source import StatusSource
from sbps.reconcile.lifecycle import ImageStatus
from sbps.reconcile.loop import Status

CLIENTS = 256
IMAGES = 255


def catalog_status() -> Status:
    images, sos, luns = [], [], []
    for n in range(1, IMAGES + 1):
        ims_id = f"{n:08x}-0000-4000-8000-{n:012x}"
        etag = f"{n:032x}-4"
        url = S3Url("boot-images", f"{ims_id}/rootfs")
        img = DesiredImage(identity.rootfs(url, etag), ImageKind.ROOTFS,
                           ObjectInfo(url, etag, 2**30 + n), f"compute-{n}", ims_id,
                           Arch.X86_64)
        name = img.identity.name
        images.append(ImageStatus(name, ImageState.EXPORTED, 1.7e9 + n, image=img, lun_id=n))
        sos.append(StorageObject(name, f"/var/lib/sbps/cache/{img.identity.digest}",
                                 img.source.size, img.identity.serial, name))
        luns.append(Lun(n, name))
    target = TargetState("iqn.2023-06.csm.iscsi:ncn-w001", True, True,
                         frozenset({Portal("10.252.1.10"), Portal("10.253.1.10")}),
                         tuple(sos), tuple(luns))
    return Status("iqn.2023-06.csm.iscsi:ncn-w001", "lio", passes=1, ready=True,
                  gate_open=True, serving=True, images=tuple(images), target=target)


class StaticControl:
    """A fixed snapshot: the benchmark measures serving, not reconciling."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def trigger(self, reason: str) -> int:
        return self.status.passes + 1

    async def wait_for_pass(self, number: int) -> Status:
        return self.status

    async def dry_run(self) -> Plan:
        return Plan()


async def _serve(kind: str, conn: Connection) -> None:
    if kind == "hello":
        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="Hello, world")
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
    else:
        control = StaticControl(catalog_status())
        deps = HttpDeps(control=control, source=StatusSource(lambda: control.status),
                        token="bench", registry=CollectorRegistry())
        with tempfile.TemporaryDirectory() as state:
            runner, port = await start_http(HttpConfig(port=0), make_app(deps), state)
    conn.send(port)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
    await runner.cleanup()


def serve(kind: str, conn: Connection) -> None:
    asyncio.run(_serve(kind, conn))


async def load(url: str, headers: dict[str, str], per_client: int,
               expect: int, rate: float = 0.0) -> dict[str, Any]:
    """Closed loop (each client sends its next request when the last one answered), or
    with ``rate``, paced: each client starts a request every CLIENTS / rate seconds."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(offset: float) -> None:
            nonlocal errors
            interval = CLIENTS / rate if rate else 0.0
            begin = time.perf_counter() + offset * interval
            for k in range(per_client):
                if interval:
                    await asyncio.sleep(max(0.0, begin + k * interval - time.perf_counter()))
                t0 = time.perf_counter()
                async with session.get(url, headers=headers) as r:
                    await r.read()
                    if r.status != expect:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        async with session.get(url, headers=headers) as r:  # warm up one connection
            await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(client(i / CLIENTS) for i in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}


def measure(kind: str, path: str, headers_for: Any, per_client: int,
            expect: int, rate: float = 0.0) -> dict[str, Any]:
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=serve, args=(kind, child), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        url = f"http://127.0.0.1:{port}{path}"
        headers = headers_for(url)
        return asyncio.run(load(url, headers, per_client, expect, rate))
    finally:
        parent.send("stop")
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _etag(url: str) -> dict[str, str]:
    async def get() -> str:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.headers["ETag"]
    return {"If-None-Match": asyncio.run(get())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests-per-client", type=int, default=40)
    add_json_arg(p)  # bare --json prints the summary as before; --json OUT writes a Result
    args = p.parse_args()
    n = args.requests_per_client
    results = {
        "hello": measure("hello", "/", lambda url: {}, n, 200),
        "catalog_304": measure("catalog", "/v1/images", _etag, n, 304),
        "catalog_full": measure("catalog", "/v1/images", lambda url: {}, n, 200),
    }
    # Closed-loop latency is queueing (256 in flight / throughput), for hello-world too;
    # the paced runs, at half the hello-world throughput, show the service latency.
    paced = results["hello"]["rps"] / 2
    results["hello_paced"] = measure("hello", "/", lambda url: {}, n, 200, paced)
    results["catalog_304_paced"] = measure("catalog", "/v1/images", _etag, n, 304, paced)
    results["catalog_full_paced"] = measure("catalog", "/v1/images", lambda url: {}, n, 200,
                                            paced)
    ratio = results["catalog_304"]["rps"] / results["hello"]["rps"]
    ok = ratio >= 0.5 and results["catalog_304_paced"]["p99_ms"] < 50
    summary = {"clients": CLIENTS, "images": IMAGES, "results": results,
               "ratio_304_vs_hello": round(ratio, 3), "goal_met": ok}
    if args.json and args.json != "-":
        result = Result("http", f"GET /v1/images at {IMAGES} images, {CLIENTS} clients")
        hello, c304 = results["hello"], results["catalog_304"]
        result.add(Measurement(
            "304 path throughput", "If-None-Match matches, closed loop", c304["rps"], "req/s",
            [], f"(p99 {c304['p99_ms']} ms closed loop)", "aiohttp hello-world",
            hello["rps"], "req/s", True, round(ratio, 3), "(higher is better)", ">= 0.5x",
            ratio >= 0.5))
        p99 = results["catalog_304_paced"]["p99_ms"]
        result.add(Measurement(
            "304 path p99, paced", f"paced at {paced:.0f} req/s", p99, "ms", [],
            f"(p50 {results['catalog_304_paced']['p50_ms']} ms)", "aiohttp hello-world paced",
            results["hello_paced"]["p99_ms"], "ms", True,
            round(p99 / max(results["hello_paced"]["p99_ms"], 1e-9), 2), "(lower is better)",
            "< 50 ms", p99 < 50))
        full = results["catalog_full"]
        result.add(Measurement(
            "full path throughput", "200 with the whole catalog, closed loop", full["rps"],
            "req/s", [], f"(paced p99 {results['catalog_full_paced']['p99_ms']} ms)",
            "aiohttp hello-world", hello["rps"], "req/s", True,
            round(full["rps"] / hello["rps"], 3), "(reported, no goal)"))
        emit(result, args.json)
    elif args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{CLIENTS} clients, {IMAGES} images, {n} requests per client")
        for name, r in results.items():
            print(f"{name:18} {r['rps']:>9} req/s  p50 {r['p50_ms']:>7} ms  "
                  f"p99 {r['p99_ms']:>7} ms  errors {r['errors']}")
        print(f"paced runs at {paced:.0f} req/s (half the hello-world throughput)")
        print(f"304 path / hello-world: {ratio:.2f}x (goal >= 0.5x, paced p99 < 50 ms): "
              f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
