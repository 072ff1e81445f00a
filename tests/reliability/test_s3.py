"""S3 through a fault proxy: latency, 5xx, connection resets, truncated bodies and wrong
content under the right ETag header, on the image data and on every other request (manifests,
claims). Downloads retry, a wrong body is refused (``etag_mismatch``) and fetched again, and
nothing corrupt is ever exported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.reliability import detectors as det
from tests.reliability.conftest import converge, count_crashes, inspect, log_lines
from tests.reliability.report import Figures
from tests.reliability.scale import Scale

ROOTFS_GET = r"/rootfs(\?|$)"


def _faults(rng: Any) -> list[Fault]:
    """One of each kind on the image data, in a seeded order, and one elsewhere."""
    data = [Fault("GET", ROOTFS_GET, latency=rng.uniform(0.2, 1.0)),
            Fault("GET", ROOTFS_GET, status=rng.choice((500, 503))),
            Fault("GET", ROOTFS_GET, reset=True),
            Fault("GET", ROOTFS_GET, truncate=rng.randrange(1, 2**20)),
            Fault("GET", ROOTFS_GET, corrupt=True)]
    rng.shuffle(data)
    other = rng.choice((Fault("*", r"\.sbps/", status=503), Fault("*", r"\.sbps/", reset=True),
                        Fault("GET", r"manifest\.json", status=500),
                        Fault("HEAD", "", reset=True), Fault("HEAD", "", latency=0.5)))
    return [*data, other]


def test_s3_faults_are_retried_and_nothing_corrupt_is_exported(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], fault_proxy: Callable[[str], FaultProxy],
        s3_server: S3Server, scale: Scale, figures: Callable[[str], Figures],
        truth: det.Truth, sbps_s3: S3, s3_bucket: str) -> None:
    rng = scale.rng("s3-faults")
    fig = figures("S3 faults (latency, 5xx, reset, truncate, wrong body)")
    proxy = fault_proxy(s3_server.endpoint)
    w = make_worker("ncn-w003", ims_server, s3={"endpoint": proxy.endpoint},
                    stage={"part_size": "1MiB", "part_concurrency": 2},
                    reconcile={"backoff_initial": "0.5s", "backoff_max": "2s"})
    book, expected = det.LunBook(), set[str]()
    w.start()
    for n in range(scale.fault_rounds):
        faults = _faults(rng)
        for f in faults:
            proxy.add(f)
        fig.faults += len(faults)
        up = upload_ims_image(f"s3fault{n}", label=True, multipart=rng.random() < 0.5,
                              random_bytes=rng.choice((2, 3)) * 2**20 + rng.randrange(4096))
        expected.add(truth.add(up))
        if converge(w, expected, timeout=120):
            fig.runs += 1
        inspect(w, fig, truth=truth, book=book, expected=expected, s3=sbps_s3,
                bucket=s3_bucket)
        left = [f for f in faults if f.count > 0 and f.path == ROOTFS_GET]
        if left:
            fig.notes.append(f"round {n}: {len(left)} image-data faults were not reached")
            proxy.clear_faults()
    logs = log_lines(w)
    mismatches = sum(1 for d in logs if d.get("code") == "etag_mismatch")
    retries = sum(1 for d in logs if d.get("msg") == "retrying chunk")
    fig.notes.append(f"{mismatches} downloads refused for etag_mismatch, {retries} chunk "
                     "retries")
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert fig.runs == scale.fault_rounds
    assert mismatches >= scale.fault_rounds, "every wrong body must be refused"
    assert retries > 0
