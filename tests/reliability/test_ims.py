"""IMS faults: 500s, timeouts, garbage JSON, and an empty image list for fewer passes than
``reconcile.empty_catalog_passes``. No LUN is removed or moved, the status says degraded
while it lasts, and the next good answer clears it. Passes are driven one at a time through
the admin API (the interval is an hour), so pass counts are exact, not timed.

The negative control of the removed-LUN detector lives here: the same empty list for more
passes than the threshold really does remove the LUN, and the detector sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker
from tests.fixtures.servers import IMSServer
from tests.reliability import detectors as det
from tests.reliability.conftest import count_crashes, inspect, run_pass
from tests.reliability.report import Figures, Report
from tests.reliability.scale import Scale

THRESHOLD = 4
KINDS = ("500", "timeout", "garbage", "empty")


def _settle(w: Worker, serials: set[str], passes: int = 20) -> dict[str, Any]:
    """Passes until the exports are ``serials`` and a pass has nothing to do."""
    st: dict[str, Any] = {}
    for _ in range(passes):
        st = run_pass(w)
        exported = {x["serial"] for x in w.luns().values()}
        if exported == serials and not st["last_report"]["results"] and not st["errors"]:
            return st
    raise AssertionError(f"no quiet pass in {passes}: {st.get('errors')}\n{w.log()[-3000:]}")


def _empty(ims: IMSServer) -> list[dict[str, Any]]:
    records = ims.list()
    for rec in records:
        ims.delete(rec["id"])
    return records


def _restore(ims: IMSServer, records: list[dict[str, Any]]) -> None:
    for rec in records:
        ims.create_image(rec["name"], link=rec["link"], arch=rec["arch"],
                         metadata=rec["metadata"])


def test_ims_faults_remove_nothing_and_report_degraded(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], scale: Scale,
        figures: Callable[[str], Figures], truth: det.Truth, sbps_s3: S3, s3_bucket: str,
        reliability_report: Report) -> None:
    rng = scale.rng("ims-faults")
    fig = figures("IMS faults (500, timeout, garbage JSON, empty list)")
    serials = {truth.add(upload_ims_image(f"ims{i}", label=True)) for i in range(2)}
    w = make_worker("ncn-w004", ims_server, catalog={"timeout": "0.5s"},
                    reconcile={"interval": "1h", "empty_catalog_passes": THRESHOLD,
                               "retire_grace": "0s"})
    w.start()
    _settle(w, serials)
    book = det.LunBook()
    ctx = {"truth": truth, "book": book, "expected": serials, "s3": sbps_s3,
           "bucket": s3_bucket}
    inspect(w, fig, **ctx)
    not_degraded = 0
    for _ in range(scale.fault_rounds):
        for kind in rng.sample(KINDS, len(KINDS)):
            passes = rng.randint(1, THRESHOLD - 1) if kind == "empty" else rng.randint(1, 2)
            records: list[dict[str, Any]] = []
            # The IMS client retries within a pass, so a fault lasts until it is cleared.
            if kind == "500":
                ims_server.faults(status=500, count=1000)
            elif kind == "timeout":
                ims_server.faults(delay=1.0, count=1000)
            elif kind == "garbage":
                ims_server.faults(garbage=True, count=1000)
            else:
                records = _empty(ims_server)
            for _ in range(passes):
                st = run_pass(w)
                fig.faults += 1
                if not st["degraded"]:
                    not_degraded += 1
                    fig.notes.append(f"{kind}: a pass under the fault was not degraded")
                inspect(w, fig, **ctx)
            ims_server.clear_faults()
            _restore(ims_server, records)
            st = _settle(w, serials)
            fig.runs += 1
            if st["degraded"]:
                fig.notes.append(f"{kind}: still degraded after recovery: {st['degraded']}")
            inspect(w, fig, **ctx)

    # Negative control of the removed-LUN detector: past the threshold, the LUNs go.
    _empty(ims_server)
    removed: list[str] = []
    for _ in range(THRESHOLD + 6):
        run_pass(w)
        removed = det.lost(serials, det.lio_exports(w.luns()))
        if removed:
            break
    reliability_report.control("data lost (LUN removed)", f"IMS empty for more than "
                               f"{THRESHOLD} passes (reconcile.empty_catalog_passes)",
                               len(removed))
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert not_degraded == 0, fig.notes
    assert removed
