"""Hostile documents planted where a running daemon reads them, and taken away again.

Each ``Hostile`` plants one document in a real upstream (the dev IMS server's raw-answer
knob, an object in the moto bucket, a fault of the S3 proxy) and returns what undoes it.
The documents: an IMS image list nested 10,000 levels deep, an IMS record with 100,000
levels in its metadata, a nested ``manifest.json``, nested claim and key-index objects
under ``.sbps/``, and an S3 HEAD answer without Content-Length. Must not judge the daemon:
the scenario does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sbps.config import TargetConfig
from sbps.core import identity
from sbps.sources.claims import ids
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import IMSServer
from tests.reliability.fuzz_bytes import nest
from tests.reliability.fuzzing import VALID_RECORD

ROOTFS = r"/rootfs(\?|$)"


@dataclass
class Upstreams:
    ims: IMSServer
    s3_client: Any
    bucket: str
    proxy: FaultProxy
    upload: Callable[..., Any]
    #: Called with each image a plant uploads, so the loss detectors know its content.
    uploaded: Callable[[Any], Any]


Undo = Callable[[], None]


def _ims_answer(up: Upstreams, body: bytes) -> Undo:
    up.ims.json("POST", "/__dev/faults",
                {"body_base64": base64.b64encode(body).decode(), "count": 100_000})
    return up.ims.clear_faults


def nested_ims_list(up: Upstreams) -> Undo:
    return _ims_answer(up, nest(10_000, "list").encode())


def nested_ims_record(up: Upstreams) -> Undo:
    doc = json.dumps([VALID_RECORD]).replace('"sbps-project": "true"',
                                             '"sbps-project": ' + nest(100_000, "list"))
    return _ims_answer(up, doc.encode())


def _new_image(up: Upstreams, name: str) -> Any:
    image = up.upload(name, label=True)
    up.uploaded(image)
    return image


def _forget(up: Upstreams, image: Any, *keys: str) -> Undo:
    def undo() -> None:
        up.ims.delete(image.ims_id)
        for key in keys:
            up.s3_client.delete_object(Bucket=up.bucket, Key=key)
    return undo


def nested_manifest(up: Upstreams) -> Undo:
    image = _new_image(up, "hostile-manifest")
    key = image.manifest_url.split("/", 3)[3]
    etag = up.s3_client.put_object(Bucket=up.bucket, Key=key,
                                   Body=nest(10_000, "object").encode())["ETag"].strip('"')
    up.ims.json("PATCH", f"/v3/images/{image.ims_id}",
                {"link": {"path": image.manifest_url, "etag": etag, "type": "s3"}})
    return lambda: up.ims.delete(image.ims_id)


def _digest(image: Any) -> str:
    return identity.rootfs(image.rootfs_url, image.rootfs_etag).digest


def nested_key_index(up: Upstreams) -> Undo:
    image = _new_image(up, "hostile-index")
    key = f".sbps/keys/{_digest(image)}"
    up.s3_client.put_object(Bucket=up.bucket, Key=key, Body=nest(10_000, "list").encode())
    return _forget(up, image, key)


def nested_claim(up: Upstreams) -> Undo:
    image = _new_image(up, "hostile-claim")
    t = TargetConfig()
    key = f".sbps/luns/{ids.first_candidate(_digest(image), t.lun_min, t.lun_max)}"
    if "Contents" in up.s3_client.list_objects_v2(Bucket=up.bucket, Prefix=key):
        return _forget(up, image)  # the good image holds that id: leave its claim alone
    up.s3_client.put_object(Bucket=up.bucket, Key=key, Body=nest(10_000, "list").encode())
    return _forget(up, image, key)


def head_without_length(up: Upstreams) -> Undo:
    up.proxy.add(Fault("HEAD", ROOTFS, strip_headers=("Content-Length",), count=100_000))
    image = _new_image(up, "hostile-head")

    def undo() -> None:
        up.proxy.clear_faults()
        up.ims.delete(image.ims_id)
    return undo


HOSTILE: dict[str, Callable[[Upstreams], Undo]] = {
    "IMS image list nested 10,000 deep": nested_ims_list,
    "IMS record with 100,000 levels in its metadata": nested_ims_record,
    "manifest.json nested 10,000 deep": nested_manifest,
    "key-index object (.sbps/keys) nested 10,000 deep": nested_key_index,
    "claim object (.sbps/luns) nested 10,000 deep": nested_claim,
    "S3 HEAD answer without Content-Length": head_without_length,
}
