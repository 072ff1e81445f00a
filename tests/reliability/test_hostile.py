"""Hostile documents served to a running daemon, on both backends (LIO on the configfs
emulation, tgt on a real tgtd): a nested IMS image list and record, a nested manifest,
nested claim and key-index objects, an S3 HEAD answer without Content-Length.

Wanted: each is a typed problem for that one document; the daemon keeps running and
answering, passes go on, the image already exported stays exported on its LUN, and nothing
it reads from the hostile document is exported. Passes are driven one at a time through the
admin API (the interval is an hour), two per planted document; the loss detectors run
once it is taken away (the claim detector would read a planted claim object itself). A daemon that dies is
counted as a crash and restarted once the document is taken away, so every kind is tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.reliability import detectors as det
from tests.reliability.conftest import (
    api_url,
    count_crashes,
    debug_state,
    http,
    inspect,
    run_pass,
)
from tests.reliability.crashes import exited
from tests.reliability.hostile import HOSTILE, Upstreams
from tests.reliability.report import Figures
from tests.reliability.scale import Scale


def _passes(w: Worker, n: int) -> bool:
    """``n`` passes through the API; False if the daemon stopped answering."""
    try:
        for _ in range(n):
            run_pass(w)
    except (OSError, AssertionError):
        return False
    return True


def _settle(w: Worker, good: str, exports: Callable[[], list[det.Export]]) -> None:
    """Passes until only ``good`` is exported and a pass has nothing to do (a restarted
    daemon may take a few seconds to answer on its new port)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not _passes(w, 1):
            time.sleep(0.5)
            continue
        if {e.serial for e in exports()} == {good} \
                and not debug_state(w)["last_report"]["results"]:
            return
    raise AssertionError(f"no quiet pass exporting only {good}:\n{w.log()[-3000:]}")


@pytest.mark.parametrize("backend", ["lio", "tgt"])
def test_hostile_documents_to_a_running_daemon(
        backend: str, request: pytest.FixtureRequest, make_worker: Callable[..., Worker],
        ims_server: IMSServer, upload_ims_image: Callable[..., Any],
        fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server, s3_client: Any,
        s3_bucket: str, sbps_s3: S3, truth: det.Truth, scale: Scale,
        figures: Callable[[str], Figures]) -> None:
    rng = scale.rng(f"hostile-{backend}")
    fig = figures(f"hostile documents to a running daemon ({backend})")
    tgtd = request.getfixturevalue("tgtd") if backend == "tgt" else None
    proxy = fault_proxy(s3_server.endpoint)
    good = truth.add(upload_ims_image("steady", label=True))
    w = make_worker(f"ncn-h{backend}", ims_server, backend=backend, tgtd=tgtd,
                    s3={"endpoint": proxy.endpoint},
                    reconcile={"interval": "1h", "retire_grace": "0s"})

    def exports() -> list[det.Export]:
        return det.tgt_exports(tgtd, w.iqn) if tgtd is not None else det.lio_exports(w.luns())

    up = Upstreams(ims_server, s3_client, s3_bucket, proxy, upload_ims_image, truth.add)
    book = det.LunBook()
    ctx = {"truth": truth, "book": book, "expected": {good}, "s3": sbps_s3,
           "bucket": s3_bucket}
    w.start()
    _settle(w, good, exports)
    inspect(w, fig, **ctx)
    kinds = list(HOSTILE)
    rng.shuffle(kinds)
    for kind in kinds:
        undo = HOSTILE[kind](up)
        fig.faults += 1
        alive = _passes(w, 2)
        died = exited(w)
        if died or not alive:
            fig.crashes += max(1, len(died))
            fig.notes.append(f"{kind}: the daemon {'exited' if died else 'stopped answering'}")
            w.kill()
        else:
            fig.runs += 1
            status, _ = http(f"{api_url(w)}/healthz", timeout=10)
            if status != 200:
                fig.notes.append(f"{kind}: /healthz answered {status}")
                fig.crashes += 1
            problems = [p for p in debug_state(w).get("problems", [])
                        if isinstance(p, dict)]
            codes = sorted({str(p.get("code")) for p in problems})
            fig.notes.append(f"{kind}: survived; problem codes {codes}")
            gone = det.lost({good}, exports())
            fig.lost += len(gone)
        undo()
        if w.proc is not None and w.proc.poll() is not None:
            w.start()  # count it once, then go on with the next document
        _settle(w, good, exports)
        inspect(w, fig, **ctx)
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert fig.runs == len(HOSTILE)
