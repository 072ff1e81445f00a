"""Benchmark (not a test): a scale model of a fleet of workers.

N simulated workers (each a real ``sbps.daemon.main`` subprocess on its own configfs emulation
mount, with its own state and cache directories; caches seeded by hard links from one
verified staging so the S3 server is not the bottleneck) share one moto bucket (their LUN id
claims) and one dev IMS catalog. For each N, images are labelled in steps (M grows); at each
step every worker converges (concurrently, as a fleet does), then the steady pass time, the
pass CPU and the RSS of the workers are measured (the curve as M grows), and all workers
must agree: the same LUN id and size for every serial, read through each worker's
``/v1/images`` and cross-checked against the first worker's configfs. Claims are cleared
between values of N, so each fleet agrees from scratch.

    python perf/bench_scale.py [--grid "1:16,32,64;4:16,32;8:16"] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Measurement, Result, add_json_arg, cpu_ns, emit, median_spread, rss_kib
from _servers import BUCKET, BenchWorker, Env, Image, lun_files

from tests.fixtures.images import PROJECT_LABEL

GOAL_RSS_MB = 100.0
SAMPLED = 4  # workers whose steady passes are timed (one after the other)


def parse_grid(text: str) -> list[tuple[int, list[int]]]:
    out = []
    for part in text.split(";"):
        n, _, ms = part.partition(":")
        out.append((int(n), sorted(int(m) for m in ms.split(","))))
    return out


def converge(w: BenchWorker, expect: int, errors: list[str]) -> None:
    try:
        for _ in range(10):
            report = w.reconcile()["report"]
            if len(lun_files(w)) >= expect and not report["results"]:
                return
        errors.append(f"{w.hostname}: not converged to {expect} LUNs")
    except Exception as exc:  # reported in the result, the other workers go on
        errors.append(f"{w.hostname}: {exc}")


def table_of(w: BenchWorker) -> dict[str, tuple[int, int]]:
    return {i["serial"]: (i["lun_id"], i["size"]) for i in w.images()
            if i.get("state") == "exported"}


def clear_claims(env: Env) -> None:
    pages = env.s3client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                    Prefix=".sbps/")
    for page in pages:
        for obj in page.get("Contents", []):
            env.s3client.delete_object(Bucket=BUCKET, Key=obj["Key"])


def run_fleet(env: Env, master: Path, images: list[Image], n: int, steps: list[int],
              rows: list[list[Any]], agree: list[bool]) -> None:
    assert env.ims is not None
    clear_claims(env)
    workers = [env.worker(f"ncn-w{n}{k:02d}", cache_from=master) for k in range(1, n + 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.api(timeout=300)
    labelled = 0
    for m in steps:
        for img in images[labelled:m]:
            env.ims.set_label(img.ims_id, PROJECT_LABEL)
        labelled = m
        errors: list[str] = []
        t0 = time.monotonic()
        threads = [threading.Thread(target=converge, args=(w, m, errors)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        converge_s = time.monotonic() - t0
        wall, cpu = [], []
        for w in workers[:SAMPLED]:
            for _ in range(2):
                c0 = cpu_ns(w.pid)
                p0 = time.perf_counter()
                w.reconcile()
                wall.append((time.perf_counter() - p0) * 1000)
                time.sleep(0.05)
                cpu.append((cpu_ns(w.pid) - c0) / 1e6)
        rss = [rss_kib(w.pid)[0] * 1024 / 1e6 for w in workers]
        tables = [table_of(w) for w in workers]
        configfs = {x["serial"]: n for n, x in workers[0].luns().items()}
        same = (all(t == tables[0] for t in tables) and len(tables[0]) == m
                and configfs == {s: lun for s, (lun, _) in tables[0].items()} and not errors)
        agree.append(same)
        wall_med, _ = median_spread(wall)
        cpu_med, _ = median_spread(cpu)
        rows.append([n, m, round(converge_s, 1), round(wall_med, 1), round(cpu_med, 1),
                     round(median_spread(rss)[0], 1), round(max(rss), 1),
                     "yes" if same else f"NO {errors[:2]}"])
        print(f"N={n} M={m}: converge {converge_s:.1f} s, pass {wall_med:.0f} ms wall "
              f"{cpu_med:.0f} ms CPU, RSS max {max(rss):.1f} MB, agree {same}", flush=True)
    for w in workers:
        w.stop()
    for img in images[:labelled]:
        env.ims.remove_label(img.ims_id, PROJECT_LABEL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="1:16,32,64;4:16,32;8:16",
                    help="N:M,M,...;N:M,... workers and image counts (M grows per N)")
    ap.add_argument("--catalog", type=int, default=2000, help="IMS records in the catalog")
    add_json_arg(ap)
    args = ap.parse_args()
    began = time.monotonic()
    grid = parse_grid(args.grid)
    m_max = max(max(ms) for _, ms in grid)
    result = Result("scale", "Scale model: N workers x M exported images (reconciler)")
    rows: list[list[Any]] = []
    agree: list[bool] = []
    with Env("sbps-bench-scale-") as env:
        images = env.upload_images(m_max)
        master = env.work / "master-cache"
        env.stage(images, master)
        env.start_ims(env.records(images, 0, max(args.catalog, m_max)))
        for n, steps in grid:
            run_fleet(env, master, images, n, steps, rows, agree)
    result.table("Pass time and memory as M grows (converge: all N workers, concurrently, "
                 f"from the previous step; pass: median of 2 triggered passes on up to "
                 f"{SAMPLED} workers, one at a time)",
                 ["N workers", "M images", "converge s", "pass wall ms", "pass CPU ms",
                  "RSS median MB", "RSS max MB", "all agree"], rows)
    for n in sorted({r[0] for r in rows}):
        curve = [r for r in rows if r[0] == n]
        if len(curve) < 2:
            continue
        first, final = curve[0], curve[-1]
        result.add(Measurement(
            f"pass wall time growth, N={n}", f"steady pass at N={n}, M={final[1]} vs "
            f"M={first[1]}", final[3], "ms", [], "", f"the same fleet at M={first[1]}",
            first[3], "ms", True, round(final[3] / first[3], 2),
            f"(for x{final[1] / first[1]:g} images)"))
    rss_max = max(r[6] for r in rows)
    result.add(Measurement(
        "worker RSS", "largest VmRSS of any worker at any step", rss_max, "MB", [], "",
        f"median worker RSS at the smallest step (N={rows[0][0]}, M={rows[0][1]})",
        rows[0][5], "MB", True, round(rss_max / rows[0][5], 2), "(lower is better)",
        f"< {GOAL_RSS_MB:g} MB", rss_max < GOAL_RSS_MB))
    result.add(Measurement(
        "workers agree", "identical serial -> (LUN id, size) maps on every worker at every "
        "step (/v1/images of each, configfs of the first)", float(sum(agree)), "steps", [],
        f"of {len(agree)}", goal="all steps", met=all(agree)))
    result.notes.append("Grid bounded to fit the suite's time budget on a 2-core machine: "
                        "M = 255 per worker was not run (see the steady benchmark for one "
                        "worker at 255).")
    emit(result, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
