"""A running marshal against hostile records (issue 20, items 2, 3 and 9).

- ``GET /v1/bootparams/{id}`` answers from the snapshot: an id that is not in the catalog
  (unlabelled, unknown, foreign) is 404 without a single IMS or S3 request, and no error
  body carries a URL; the image's own parameters come from the artifact the pass read.
- A labelled record whose rootfs is in another bucket (with the right etag) is not
  exported; it is the problem ``foreign_bucket`` in ``sbps_catalog_problems``.
- A second record on the same rootfs does not take over the first one's catalog entry:
  both ids resolve, to the same LUN.

S3 goes through the counting proxy and IMS counts the requests it serves, so the "no
request" checks can fail: the control is a pass, which makes both counters move.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from tests.fixtures.images import PROJECT_LABEL, UploadedImage
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.fixtures.web import get

SECRET = b"SECRET-OF-ANOTHER-BUCKET"


def hostile_records(ims: IMSServer, s3_client: Any, bucket: str, other: str,
                    up: UploadedImage) -> dict[str, str]:
    """An unlabelled record whose boot link reads another bucket (the confused deputy of
    the issue) and a labelled one whose rootfs is a copy in another bucket."""
    copy = s3_client.put_object(Bucket=other, Key="copy/rootfs", Body=up.path.read_bytes())
    secret = s3_client.put_object(Bucket=other, Key="secret", Body=SECRET)
    out = {}
    for name, rootfs, boot, label in (
            ("deputy", (up.rootfs_url, up.rootfs_etag),
             (f"s3://{other}/secret", secret["ETag"]), {}),
            ("foreign", (f"s3://{other}/copy/rootfs", copy["ETag"]), None,
             {PROJECT_LABEL: "true"})):
        arts = [{"link": {"path": rootfs[0], "etag": rootfs[1].strip('"'), "type": "s3"},
                 "type": "application/vnd.cray.image.rootfs.squashfs"}]
        if boot:
            arts.append({"link": {"path": boot[0], "etag": boot[1].strip('"'), "type": "s3"},
                         "type": "application/vnd.cray.image.parameters.boot"})
        key = f"{name}-{uuid.uuid4().hex[:6]}/manifest.json"
        r = s3_client.put_object(Bucket=bucket, Key=key,
                                 Body=json.dumps({"version": "1", "artifacts": arts}).encode())
        rec = ims.create_image(name, metadata=label, link={
            "path": f"s3://{bucket}/{key}", "etag": r["ETag"].strip('"'), "type": "s3"})
        out[name] = str(rec["id"])
    return out


def test_bootparams_buckets_and_shared_rootfs(
        make_worker: Callable[..., Worker], ims_server: IMSServer, s3_server: S3Server,
        s3_client: Any, s3_bucket: str, fault_proxy: Callable[[str], FaultProxy],
        upload_ims_image: Callable[..., UploadedImage]) -> None:
    proxy = fault_proxy(s3_server.endpoint)
    other = f"other-bucket-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=other)
    up = upload_ims_image("compute", boot_parameters="console=ttyS0 quiet")
    # Item 9: a second labelled record on the very same manifest, hence the same rootfs.
    twin = ims_server.create_image("twin", metadata={PROJECT_LABEL: "true"}, link={
        "path": up.manifest_url, "etag": up.manifest_etag, "type": "s3"})["id"]
    ids = hostile_records(ims_server, s3_client, s3_bucket, other, up)
    w = make_worker("ncn-w001", ims_server, reconcile={"interval": "1h"},
                    s3={"endpoint": proxy.endpoint})
    w.start()
    url = wait_until("the API URL", lambda: (w.root / "state/http-url").exists()
                     and (w.root / "state/http-url").read_text().strip(), worker=w)
    token = (w.root / "state/admin-token").read_text().strip()

    def entry(ims_id: str) -> dict[str, Any] | None:
        status, body = get(f"{url}/v1/images/{ims_id}")
        hits = [e for e in json.loads(body)["images"] if e["state"] == "exported"] \
            if status == 200 else []
        return hits[0] if hits else None

    first = wait_until("the image to be exported", lambda: entry(up.ims_id), worker=w)
    second = entry(twin)
    assert second is not None and second["ims_id"] == twin
    assert (second["lun_id"], second["serial"]) == (first["lun_id"], first["serial"])
    assert first["ims_id"] == up.ims_id and len(w.luns()) == 1

    # Item 3: the foreign rootfs is a problem, not a LUN.
    _, metrics = get(f"{url}/metrics")
    assert 'sbps_catalog_problems{reason="foreign_bucket"} 1.0' in metrics.decode()
    assert entry(ids["foreign"]) is None

    status, body = get(f"{url}/v1/bootparams/{up.ims_id}")
    assert status == 200
    doc = json.loads(body)
    assert doc["cmdline"] == f"console=ttyS0 quiet {doc['root']}"
    assert doc["serial"] == first["serial"]

    def passes() -> int:
        return int(json.loads(get(f"{url}/debug/state", token)[1])["passes"])

    def counts() -> tuple[dict[str, int], int]:
        return ims_server.requests(), len(proxy.requests())

    # Item 2: unknown, unlabelled (the deputy) and foreign ids: 404 from memory.
    probes = [ids["deputy"], ids["foreign"], str(uuid.uuid4()), "..%2F..%2Fetc", twin]
    for _ in range(5):
        before, at = counts(), passes()
        answers = [get(f"{url}/v1/bootparams/{p}") for p in probes]
        if passes() == at:  # no pass ran meanwhile: every request counted is ours
            assert counts() == before
            break
    else:
        raise AssertionError("passes kept running; cannot attribute the requests")
    for probe, (status, body) in zip(probes[:-1], answers[:-1], strict=True):
        assert status == 404, (probe, body)
        assert b"://" not in body and ims_server.url.encode() not in body
        assert SECRET not in body
    assert answers[-1][0] == 200 and json.loads(answers[-1][1])["ims_id"] == twin

    # The control: a pass asks IMS and S3, and both counters see it.
    get(f"{url}/v1/reconcile?wait=1", token, method="POST")
    after = counts()
    assert sum(after[0].values()) > sum(before[0].values()) and after[1] > before[1]
    assert SECRET not in w.log().encode()
