"""Benchmark (not a test): label -> export latency of an already-cached image.

A real marshal (``sbps.daemon.main`` subprocess, LIO backend on the configfs emulation, moto S3,
the dev IMS server with a 2,000-record catalog) whose cache already holds every image
(staged beforehand by the stager's own verified download). Each of ``--changes`` label
changes sets the label of one more image in IMS, then:

- trigger mode (interval 1 h): ``POST /v1/reconcile?wait=1`` with the admin token;
- interval mode (interval 1 s): nothing, the next interval pass picks it up (the label is
  set at a random moment relative to the pass schedule);

and the clock stops when the image's LUN appears in the worker's configfs. Goal: p95 <= 1 s
with the trigger. Baselines: the field agent's scan interval (180 s, a reference figure, not
measured) and one IMS GET of the image list on the same dev server, measured in this run.

    python perf/bench_latency.py [--changes 50] [--catalog 2000] [--json OUT]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Measurement, PySpy, Result, add_json_arg, emit, median_spread, percentile
from _servers import BenchWorker, Env, Image, lun_files, wait_for

from tests.fixtures.images import PROJECT_LABEL

FIELD_AGENT_SCAN = 180.0
GOAL_P95 = 1.0
PROFILE_CHANGES = 10


def ims_get_seconds(url: str, n: int = 30) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        out.append(time.perf_counter() - t0)
    return out


def change(env: Env, w: BenchWorker, img: Image, trigger: bool) -> float:
    """Label ``img``, time until its LUN is in configfs; then unlabel it and wait until the
    LUN is gone (retire_grace 0), so every change starts from the same target."""
    assert env.ims is not None
    name = img.desired.identity.name
    env.ims.set_label(img.ims_id, PROJECT_LABEL)
    t0 = time.perf_counter()
    if trigger:
        w.reconcile()
    try:
        wait_for(f"{img.name} exported", lambda: name in lun_files(w), timeout=120, every=0.01)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{w.log()[-4000:]}") from None
    elapsed = time.perf_counter() - t0
    env.ims.remove_label(img.ims_id, PROJECT_LABEL)

    def retired() -> bool:
        if trigger:  # a retiring LUN goes once a later pass sees its counters unchanged
            w.reconcile()
        return name not in lun_files(w)

    wait_for(f"{img.name} retired", retired, timeout=120, every=0.05)
    return elapsed


def start(w: BenchWorker, interval: str) -> None:
    w.settings["reconcile"]["interval"] = interval
    w.start()
    w.api()
    wait_for("the first pass", lambda: w.debug_state().get("passes", 0) >= 1, timeout=120,
             every=0.1)


def background(env: Env, w: BenchWorker, images: list[Image]) -> None:
    """Export ``images`` (one pass) and keep them: the target the next changes start from."""
    assert env.ims is not None
    for img in images:
        env.ims.set_label(img.ims_id, PROJECT_LABEL)
    w.reconcile()
    names = {i.desired.identity.name for i in images}
    wait_for("the background exports", lambda: names <= lun_files(w), timeout=600, every=0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=50, help="label changes per mode")
    ap.add_argument("--catalog", type=int, default=2000, help="IMS records in the catalog")
    ap.add_argument("--curve", default="16", help="exported LUNs already on the target "
                    "for the trigger-mode curve (comma-separated; empty: none)")
    ap.add_argument("--curve-changes", type=int, default=3)
    add_json_arg(ap)
    args = ap.parse_args()
    began = time.monotonic()
    n = args.changes
    curve = [int(x) for x in args.curve.split(",") if x.strip()]
    spare = PROFILE_CHANGES + args.curve_changes * len(curve) + max(curve, default=0)
    result = Result("latency", "Label -> export latency of a cached image (reconciler)")
    with Env("sbps-bench-latency-") as env:
        images = env.upload_images(2 * n + spare)
        pool = iter(images[2 * n:])
        master = env.work / "master-cache"
        env.stage(images, master)
        ims = env.start_ims(env.records(images, 0, max(args.catalog, len(images))))
        ims_get = ims_get_seconds(ims.images_url)
        w = env.worker("ncn-w001", cache_from=master)

        start(w, "1h")
        trig = [change(env, w, img, trigger=True) for img in images[:n]]
        profile = ""
        if percentile(trig, 95) > GOAL_P95:
            spy = PySpy(w.pid, env.work / "latency.pyspy")
            for _ in range(PROFILE_CHANGES):
                change(env, w, next(pool), trigger=True)
            profile = spy.stop()
        rows = []
        exported = 0
        for size in curve:
            background(env, w, [next(pool) for _ in range(size - exported)])
            exported = size
            samples = [change(env, w, next(pool), trigger=True)
                       for _ in range(args.curve_changes)]
            med, spread = median_spread(samples)
            rows.append([size, round(med, 3), round(max(samples), 3), spread])
        w.stop()
        if exported:  # the interval mode starts from an empty target again
            assert env.ims is not None
            for img in images[2 * n:]:
                env.ims.remove_label(img.ims_id, PROJECT_LABEL)

        start(w, "1s")
        if exported:
            wait_for("the background to retire", lambda: not lun_files(w), timeout=600,
                     every=0.5)
        rng = random.Random(7)
        inter = []
        for img in images[n:2 * n]:
            time.sleep(rng.uniform(0, 1))
            inter.append(change(env, w, img, trigger=False))
        w.stop()

    ims_med, ims_spread = median_spread([x * 1000 for x in ims_get])
    for mode, samples, goal in (("trigger", trig, True), ("interval 1 s", inter, False)):
        p50, spread = median_spread(samples)
        p95 = percentile(samples, 95)
        ms = [round(x * 1000, 1) for x in samples]
        result.add(Measurement(
            f"p95, {mode}", f"label set in IMS -> LUN in configfs, {mode} mode, "
            f"{len(samples)} label changes, catalog of {args.catalog} records, no other LUN",
            round(p95, 3), "s", ms, f"p50 {p50:.3f} s {spread}",
            "field agent scan interval", FIELD_AGENT_SCAN, "s", False,
            round(p95 / FIELD_AGENT_SCAN, 4), "(p95 / 180 s; lower is better)",
            f"p95 <= {GOAL_P95:g} s" if goal else "", (p95 <= GOAL_P95) if goal else None))
        result.add(Measurement(
            f"p50, {mode}", f"median of the same {len(samples)} label changes",
            round(p50, 3), "s", [], spread, "one IMS GET /v3/images (same dev server)",
            round(ims_med, 2), "ms", True, round(p50 * 1000 / ims_med, 1),
            "(p50 / IMS GET; lower is better)"))
    if rows:
        result.table("Trigger-mode latency vs LUNs already exported (each export pass saves "
                     "the whole LIO configuration: rtslib dump through the emulation)",
                     ["LUNs exported", "median s", "max s", "spread"], rows)
    result.notes.append(f"IMS GET /v3/images of {args.catalog} records: median "
                        f"{ims_med:.2f} ms {ims_spread}")
    result.notes.append("The field agent's figure is its scan interval (180 s), a reference "
                        "from its configuration, not measured here.")
    result.notes.append("Each change is undone (unlabel, LUN retired with retire_grace 0) "
                        "before the next, so every change starts from the same target.")
    result.profile = profile
    emit(result, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
