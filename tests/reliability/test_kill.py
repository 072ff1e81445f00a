"""SIGKILL the marshal at seeded random points during staging and during apply.

After each kill the worker is restarted and must converge: every labelled image exported,
each from a file whose size and MD5 equal the S3 object, no LUN on a new id, the journal and
the S3 claims consistent, no download leftovers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from sbps.core import identity
from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.reliability import detectors as det
from tests.reliability.conftest import converge, count_crashes, inspect, log_lines
from tests.reliability.crashes import exited
from tests.reliability.report import Figures
from tests.reliability.scale import Scale

# Slow enough that a download of a few MiB runs for seconds (the first MiB is a burst).
BANDWIDTH = 2**20


def _applied(w: Worker, start: int) -> int:
    return sum(1 for d in log_lines(w, start) if d.get("msg", "").startswith("applied "))


def _restart_and_check(w: Worker, fig: Figures, expected: set[str], **ctx: Any) -> None:
    fig.crashes += len(exited(w))  # died before the kill: a crash, not a kill
    w.kill()
    fig.faults += 1
    w.start()
    if converge(w, expected):
        fig.runs += 1
    else:
        fig.notes.append(f"did not converge after kill {fig.faults}")
    inspect(w, fig, expected=expected, **ctx)


def test_sigkill_during_staging(make_worker: Callable[..., Worker], ims_server: IMSServer,
                                upload_ims_image: Callable[..., Any], scale: Scale,
                                figures: Callable[[str], Figures], truth: det.Truth,
                                sbps_s3: S3, s3_bucket: str) -> None:
    rng = scale.rng("kill-staging")
    fig = figures("SIGKILL during staging")
    w = make_worker("ncn-w001", ims_server,
                    stage={"bandwidth": BANDWIDTH, "part_size": "1MiB",
                           "part_concurrency": 2})
    book, expected = det.LunBook(), set[str]()
    ctx = {"truth": truth, "book": book, "s3": sbps_s3, "bucket": s3_bucket}
    hits = 0
    for n in range(scale.kills):
        multipart = rng.random() < 0.5
        size = rng.choice((3, 4, 6)) * 2**20
        if n == 0:
            w.start()
        up = upload_ims_image(f"stage{n}", label=True, multipart=multipart,
                              random_bytes=size)
        expected.add(truth.add(up))
        digest = identity.rootfs(up.rootfs_url, up.rootfs_etag).digest
        partial = os.path.join(w.settings["stage"]["cache_dir"], f".{digest}.partial")
        wait_until("the download to start", lambda p=partial: os.path.exists(p), worker=w)
        time.sleep(rng.uniform(0.0, 0.8 * (size - 2**20) / BANDWIDTH))
        hits += os.path.exists(partial)  # still downloading when the kill lands
        _restart_and_check(w, fig, expected, **ctx)
    count_crashes(w, fig)
    fig.notes.append(f"{hits} of {scale.kills} kills landed while a download was running")
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert fig.runs == scale.kills


def test_sigkill_during_apply(make_worker: Callable[..., Worker], ims_server: IMSServer,
                              upload_ims_image: Callable[..., Any], scale: Scale,
                              figures: Callable[[str], Figures], truth: det.Truth,
                              sbps_s3: S3, s3_bucket: str) -> None:
    rng = scale.rng("kill-apply")
    fig = figures("SIGKILL during apply")
    w = make_worker("ncn-w002", ims_server)
    book, expected = det.LunBook(), set[str]()
    ctx = {"truth": truth, "book": book, "s3": sbps_s3, "bucket": s3_bucket}
    w.start()
    for n in range(scale.kills):
        count = rng.randint(2, 4)
        mark = len(w.log())
        for i in range(count):
            expected.add(truth.add(upload_ims_image(f"apply{n}-{i}", label=True)))
        # Each new image takes at least a claim, a stage, a backstore and a LUN.
        k = rng.randint(1, 4 * count)
        wait_until(f"{k} applied actions",
                   lambda m=mark, k=k: _applied(w, m) >= k, worker=w)
        time.sleep(rng.uniform(0.0, 0.05))
        _restart_and_check(w, fig, expected, **ctx)
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert fig.runs == scale.kills
