"""Staging on a real RGW: the moto test bodies of tests/integration, unchanged, plus what
only a real gateway shows (its own multipart ETags, a large object).

RGW 16.2 ignores ``partNumber`` on HEAD and GET (no PartsCount, the whole object), so the
multipart layout cannot be learned from it: a multipart object is verified by the MD5 its
manifest records (strict), and refused as unverifiable without one (docs/s3.md). The moto
tests that rely on the layout run here as their RGW counterparts below.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from sbps.core.errors import VerificationError
from sbps.core.model import S3Url
from sbps.imagebuild.upload import upload_image
from sbps.sources.s3 import S3
from sbps.sources.stager import Stager
from tests.fixtures.proxy import Fault, FaultProxy
from tests.integration.test_proxy import obj, test_sbps_s3_client_through_faults  # noqa: F401
from tests.integration.test_s3 import (  # noqa: F401 (collected by pytest)
    test_conditional_create_has_one_winner,
    test_missing_object_and_listing,
)
from tests.integration.test_stager import (  # noqa: F401
    MIB,
    body_of,
    image,
    stage_cfg,
    test_cache_full_never_evicts_what_is_in_use,
    test_pe_reupload_under_the_same_digest_waits_until_unexported,
    test_server_errors_and_resets_are_retried,
    test_single_part_object_is_verified,
    test_unknown_multipart_layout,
    test_wrong_md5_fails_and_leaves_nothing,
)
from tests.integration.test_stager import (
    test_download_killed_resumes_from_completed_parts as _resume,
)
from tests.integration.test_upload import (  # noqa: F401
    test_no_manifest_when_an_artifact_fails,
    test_single_part_layout_and_manifest,
    test_upload_ims_image_fixture,
)


async def test_download_killed_resumes_single_part(
        proxy: FaultProxy, proxied_s3: S3, s3_client: Any, s3_bucket: str, cache_dir: Path,
        s3_credential_file: Path) -> None:
    """The moto body with a single-part object (its multipart case needs the layout)."""
    await _resume(proxy, proxied_s3, s3_client, s3_bucket, cache_dir, s3_credential_file,
                  False)


def test_rgw_gives_no_multipart_layout_and_an_empty_complete_etag(
        s3: S3, s3_client: Any, s3_bucket: str) -> None:
    """What RGW 16.2 does that moto does not (docs/s3.md): if this starts to fail, RGW
    learned the layout and the MD5 fallback is no longer needed."""
    body = body_of(11 * MIB, seed=3)
    up = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="m/rootfs")
    parts = []
    for n, start in enumerate(range(0, len(body), 5 * MIB), 1):
        r = s3_client.upload_part(Bucket=s3_bucket, Key="m/rootfs", UploadId=up["UploadId"],
                                  PartNumber=n, Body=body[start:start + 5 * MIB])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    done = s3_client.complete_multipart_upload(
        Bucket=s3_bucket, Key="m/rootfs", UploadId=up["UploadId"],
        MultipartUpload={"Parts": parts})
    assert not done.get("ETag")
    etag = s3_client.head_object(Bucket=s3_bucket, Key="m/rootfs")["ETag"].strip('"')
    md5s = [hashlib.md5(body[i:i + 5 * MIB]).digest() for i in range(0, len(body), 5 * MIB)]
    assert etag == hashlib.md5(b"".join(md5s)).hexdigest() + "-3"
    info = s3.head(S3Url(s3_bucket, "m/rootfs"), part_number=1)
    assert (info.etag, info.size, info.parts, info.part_size) == (etag, len(body), 0, 0)


@pytest.mark.parametrize("chunk", [3 * MIB, 12 * MIB])
async def test_multipart_image_is_verified_by_its_manifest_md5(
        s3: S3, s3_bucket: str, cache_dir: Path, tmp_path: Path, chunk: int) -> None:
    """An image uploaded by sbps's uploader in parts (RGW's own multipart ETag): strict
    staging refuses it without an MD5 and verifies it with the manifest's."""
    path = tmp_path / "rootfs"
    path.write_bytes(os.urandom(13 * MIB + 5))
    up = upload_image(s3, s3_bucket, "img-mp", path, multipart_threshold=5 * MIB,
                      part_size=5 * MIB).rootfs
    assert up.parts == 3 and up.etag.endswith("-3")
    stager = Stager(stage_cfg(cache_dir, part_size=chunk), s3)
    try:
        with pytest.raises(VerificationError) as err:
            await stager.stage(image(s3_bucket, up.url.key, up.etag, up.size))
        assert err.value.code == "unverifiable"
        entry = await stager.stage(image(s3_bucket, up.url.key, up.etag, up.size, up.md5))
        assert Path(entry.path).read_bytes() == path.read_bytes()
        assert stager.status().best_effort == 0
    finally:
        await stager.aclose()


@pytest.mark.timeout(300)
async def test_large_object_uploads_stages_and_resumes_after_faults(
        proxy: FaultProxy, proxied_s3: S3, s3: S3, s3_bucket: str, cache_dir: Path,
        tmp_path: Path) -> None:
    """200 MB through sbps's uploader (16 MiB parts), staged through the fault proxy with
    resets and 503s on some ranged GETs, verified by the manifest MD5."""
    path = tmp_path / "large"
    block = os.urandom(MIB)
    with open(path, "wb") as fh:
        for n in range(200):
            fh.write(hashlib.sha256(bytes([n % 256]) * 32).digest() + block[32:])
    up = upload_image(s3, s3_bucket, "img-large", path).rootfs
    assert up.size == 200 * MIB and up.parts == 13
    proxy.add(Fault(method="GET", path="large|rootfs", count=2, reset=True))
    proxy.add(Fault(method="GET", path="large|rootfs", count=2, status=503))
    stager = Stager(stage_cfg(cache_dir, part_size=16 * MIB), proxied_s3)
    try:
        entry = await stager.stage(image(s3_bucket, up.url.key, up.etag, up.size, up.md5))
        assert os.path.getsize(entry.path) == up.size
        digest = hashlib.md5()
        with open(entry.path, "rb") as fh:
            while chunk := fh.read(8 * MIB):
                digest.update(chunk)
        assert digest.hexdigest() == up.md5
        # Every injected fault was met, and retried (by botocore or the stager).
        assert len(proxy.requests("GET")) >= 200 // 16 + 1 + 4
        assert all(f.count == 0 for f in proxy.faults)
    finally:
        await stager.aclose()
