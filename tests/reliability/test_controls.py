"""Negative controls: each loss detector is shown to fire on a planted loss.

A detector that cannot fire proves nothing, so each one used by the scenarios meets a real
instance of what it looks for: a corrupt export (verification switched off with
``stage.verify = best-effort``, the multipart layout hidden and the manifest MD5 removed, and
a proxy flipping bytes under the right ETag), a renumbered LUN, a partial download file, a
missing claim. The crash detector meets crashes planted inside the daemon under test
(tests.fixtures.plant): an exception in a later pass, one in the first pass, and an
``os._exit``. The removed-LUN detector's control is in
``test_ims.py`` (a catalog empty beyond the threshold really removes the LUN).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.core import identity
from sbps.sources.s3 import S3
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.plant import plant_env
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.reliability import detectors as det
from tests.reliability.conftest import converge
from tests.reliability.crashes import crashes
from tests.reliability.report import Report
from tests.reliability.test_s3 import ROOTFS_GET


def _without_md5(up: Any, s3_client: Any, bucket: str, ims: IMSServer) -> None:
    """Rewrite the image's manifest without MD5s and point its IMS record at the new one."""
    key = up.manifest_url.split("/", 3)[3]
    doc = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    for art in doc["artifacts"]:
        art.pop("md5", None)
    etag = s3_client.put_object(Bucket=bucket, Key=key,
                                Body=json.dumps(doc).encode())["ETag"].strip('"')
    ims.json("PATCH", f"/v3/images/{up.ims_id}",
             {"link": {"path": up.manifest_url, "etag": etag, "type": "s3"}})


def test_loss_detectors_fire_on_planted_losses(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], fault_proxy: Callable[[str], FaultProxy],
        s3_server: S3Server, s3_client: Any, s3_bucket: str, sbps_s3: S3,
        truth: det.Truth, reliability_report: Report) -> None:
    proxy = fault_proxy(s3_server.endpoint)
    proxy.add(Fault("HEAD", r"partNumber=", strip_headers=("x-amz-mp-parts-count",),
                    count=10_000))
    proxy.add(Fault("GET", ROOTFS_GET, corrupt=True, count=10_000))
    up = upload_ims_image("control", label=True, multipart=True)
    _without_md5(up, s3_client, s3_bucket, ims_server)
    serial = truth.add(up)
    w = make_worker("ncn-w009", ims_server, s3={"endpoint": proxy.endpoint},
                    stage={"verify": "best-effort"})
    w.start()
    assert converge(w, {serial}), w.log()[-3000:]
    exports = det.lio_exports(w.luns())
    cache = str(w.settings["stage"]["cache_dir"])
    state = str(w.settings["reconcile"]["state_dir"])
    assert w.stop() == 0

    corrupt = det.corrupt_exports(exports, truth, cache)
    reliability_report.control("corrupt exports", "stage.verify = best-effort, multipart "
                               "layout hidden, manifest MD5 removed, proxy flips bytes under "
                               "the right ETag", len(corrupt))

    book = det.LunBook()
    assert book.check(exports) == []
    moved = [det.Export(e.lun % 255 + 1, e.serial, e.name, e.file) for e in exports]
    renumbered = book.check(moved)
    reliability_report.control("LUNs renumbered", "the same serial read back on another "
                               "LUN id", len(renumbered))

    assert det.partial_files(cache) == []
    digest = identity.rootfs(up.rootfs_url, up.rootfs_etag).digest
    with open(f"{cache}/.{digest}.partial", "wb") as fh:
        fh.write(b"half an image")
    partial = det.partial_files(cache)
    reliability_report.control("partial files left", "a .partial download file in the "
                               "cache", len(partial))

    assert det.claim_problems(sbps_s3, s3_bucket, w.hostname, state, exports) == []
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=".sbps/")
    for obj in listed.get("Contents", []):
        s3_client.delete_object(Bucket=s3_bucket, Key=obj["Key"])
    claims = det.claim_problems(sbps_s3, s3_bucket, w.hostname, state, exports)
    reliability_report.control("claim problems", "the LUN's claim objects deleted from S3",
                               len(claims))

    assert corrupt and renumbered and partial and claims


#: Crashes planted inside the daemon under test (tests.fixtures.plant), and how each shows.
PLANTED = (
    ("raise:3", "RuntimeError raised in the 3rd pass's catalog scan (an exception logged "
                "as JSON, which the raw-traceback count missed)"),
    ("raise:1", "RuntimeError raised in the first pass, before the daemon is ready (raw "
                "traceback)"),
    ("exit:3", "os._exit(3) in the 3rd pass (the process ends without a word)"),
)


def test_crash_detector_fires_on_crashes_planted_in_the_daemon(
        make_worker: Callable[..., Worker], ims_server: IMSServer, tmp_path: Path,
        reliability_report: Report) -> None:
    """The crash detector's negative control: real crashes inside the daemon under test."""
    detected = {}
    for n, (plant, planted) in enumerate(PLANTED):
        w = make_worker(f"ncn-c{n:03d}", ims_server)
        w.start(**plant_env(tmp_path / f"plant{n}", crash=plant))
        try:
            found = wait_until(f"the planted crash {plant}", lambda w=w: crashes(w),
                               timeout=60)
        finally:
            w.kill()
        detected[plant] = found
        reliability_report.control("crashes (daemon)", planted, len(found))
    assert all(detected.values()), detected
