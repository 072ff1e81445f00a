"""Disk full in the cache: the cache directory is a size-limited tmpfs (the file system
fills: ``no_space``), then the cache budget is smaller than an image (``cache_full``). The
image that does not fit fails with that code and leaves no file behind; the other images are
staged and exported as if nothing happened."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sbps.core import identity
from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker
from tests.fixtures.servers import IMSServer
from tests.reliability import detectors as det
from tests.reliability.conftest import converge, count_crashes, debug_state, inspect
from tests.reliability.report import Figures
from tests.reliability.scale import Scale


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[None]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


def _failed(w: Worker, digest: str) -> str:
    for img in debug_state(w)["desired"]:
        if img["name"] == digest[:15] and img["state"] == "failed":
            return str(img["reason"])
    return ""


def _leftovers(cache: str, digest: str) -> list[str]:
    return sorted(n for n in os.listdir(cache) if digest in n)


def test_full_cache_fails_one_image_and_leaves_nothing_behind(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], scale: Scale,
        figures: Callable[[str], Figures], truth: det.Truth, sbps_s3: S3,
        s3_bucket: str) -> None:
    fig = figures("disk full (tmpfs full: no_space; budget: cache_full)")
    small = {truth.add(upload_ims_image(f"small{i}", label=True)) for i in range(2)}
    big = upload_ims_image("big", label=True, random_bytes=8 * 2**20)
    truth.add(big)
    big_id = identity.rootfs(big.rootfs_url, big.rootfs_etag)
    digest = big_id.digest
    # keep_free 0: the file system itself must run full (ENOSPC) in the first half; the
    # default free-space floor would refuse the image before that (the budget half).
    w = make_worker("ncn-w005", ims_server, reconcile={"backoff_initial": "1h"},
                    stage={"keep_free": 0})
    cache = str(w.settings["stage"]["cache_dir"])
    book = det.LunBook()
    ctx = {"truth": truth, "book": book, "expected": small, "s3": sbps_s3,
           "bucket": s3_bucket, "pending": [big_id]}
    with tmpfs(Path(cache), "4m"):
        try:
            w.start()
            if converge(w, small):
                fig.runs += 1
            reason = _failed(w, digest)
            fig.faults += 1
            fig.notes.append(f"tmpfs of 4 MiB, 8 MiB image: {reason[:120]}")
            assert reason.startswith("no_space"), w.log()[-3000:]
            inspect(w, fig, **ctx)
            fig.partial += len(_leftovers(cache, digest))
            assert w.stop() == 0

            w.settings["stage"]["max_bytes"] = "2MiB"
            w.start()
            if converge(w, small):
                fig.runs += 1
            reason = _failed(w, digest)
            fig.faults += 1
            fig.notes.append(f"budget of 2 MiB, 8 MiB image: {reason[:120]}")
            assert reason.startswith("cache_full"), w.log()[-3000:]
            inspect(w, fig, **ctx)
            fig.partial += len(_leftovers(cache, digest))
            count_crashes(w, fig)
            assert w.stop() == 0
        finally:
            w.kill()
    assert fig.losses == 0, fig.notes
    assert fig.runs == 2
