"""sbps.imagebuild.upload against the real moto server, and the upload_ims_image fixture."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbps.core.errors import InputError
from sbps.core.model import ArtifactType, S3Url
from sbps.imagebuild.upload import (
    MIN_PART_SIZE,
    UploadResult,
    check_image_id,
    multipart_etag,
    upload_image,
)
from sbps.sources.s3 import S3, NotFound, UpstreamPermanentError
from tests.fixtures.images import MARKER, PROJECT_LABEL, BuiltImage, UploadedImage
from tests.fixtures.servers import IMSServer

IMAGE_ID = "4fab0408-0bfe-4668-b957-964f8ff0e4e9"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(s3_client: Any, bucket: str) -> dict[str, str]:
    found = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: o["ETag"].strip('"') for o in found}


def record_put_order(sbps_s3: S3) -> list[str]:
    """Keys in the order S3 finished writing them (single-part or multipart)."""
    order: list[str] = []

    def after(params: dict[str, Any], **_: Any) -> None:
        order.append(params["Key"])

    events = sbps_s3.client.meta.events
    events.register("before-parameter-build.s3.PutObject", after)
    events.register("before-parameter-build.s3.CompleteMultipartUpload", after)
    return order


def test_single_part_layout_and_manifest(sbps_s3: S3, s3_client: Any, s3_bucket: str,
                                         squashfs_image: Callable[..., BuiltImage],
                                         tmp_path: Path) -> None:
    built = squashfs_image("single")
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"kernel bytes")
    initrd.write_bytes(b"initrd bytes")
    order = record_put_order(sbps_s3)
    result = upload_image(sbps_s3, s3_bucket, IMAGE_ID, built.path, kernel=kernel,
                          initrd=initrd, boot_parameters="console=ttyS0 quiet")
    assert order == [f"{IMAGE_ID}/{name}" for name in
                     ("rootfs", "kernel", "initrd", "boot_parameters", "manifest.json")]
    objects = listing(s3_client, s3_bucket)
    assert set(objects) == set(order)
    rootfs = result.rootfs
    assert rootfs.url == S3Url(s3_bucket, f"{IMAGE_ID}/rootfs") and rootfs.parts == 0
    assert rootfs.md5 == rootfs.etag == md5(built.path.read_bytes()) == objects[str(
        rootfs.url.key)]
    assert rootfs.size == built.size
    assert result.artifact(ArtifactType.KERNEL).md5 == md5(b"kernel bytes")
    params = s3_client.get_object(Bucket=s3_bucket, Key=f"{IMAGE_ID}/boot_parameters")
    assert params["Body"].read() == b"console=ttyS0 quiet"
    body = s3_client.get_object(Bucket=s3_bucket, Key=f"{IMAGE_ID}/manifest.json")
    assert body["ContentType"] == "application/json"
    manifest = json.loads(body["Body"].read())
    assert manifest["version"] == "1.0" and manifest["created"]
    assert result.manifest_etag == objects[f"{IMAGE_ID}/manifest.json"]
    assert result.manifest_url == S3Url(s3_bucket, f"{IMAGE_ID}/manifest.json")
    assert manifest["artifacts"] == [
        {"link": {"path": f"s3://{s3_bucket}/{IMAGE_ID}/{name}", "etag": objects[
            f"{IMAGE_ID}/{name}"], "type": "s3"}, "md5": art.md5, "type": kind.value}
        for name, kind, art in zip(
            ("rootfs", "kernel", "initrd", "boot_parameters"), ArtifactType, result.artifacts,
            strict=True)]


def test_multipart_etag_and_md5(sbps_s3: S3, s3_client: Any, s3_bucket: str,
                                squashfs_image: Callable[..., BuiltImage]) -> None:
    built = squashfs_image("big", random_bytes=11 * 2**20)
    data = built.path.read_bytes()
    result = upload_image(sbps_s3, s3_bucket, IMAGE_ID, built.path,
                          multipart_threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    rootfs = result.rootfs
    parts = [data[i:i + MIN_PART_SIZE] for i in range(0, len(data), MIN_PART_SIZE)]
    assert rootfs.parts == len(parts) == 3
    expected = md5(b"".join(hashlib.md5(p).digest() for p in parts)) + "-3"
    assert rootfs.etag == expected == listing(s3_client, s3_bucket)[f"{IMAGE_ID}/rootfs"]
    assert rootfs.md5 == md5(data) and rootfs.size == len(data)
    head = sbps_s3.head(rootfs.url, part_number=1)
    assert (head.parts, head.part_size) == (3, MIN_PART_SIZE)
    manifest = json.loads(s3_client.get_object(
        Bucket=s3_bucket, Key=f"{IMAGE_ID}/manifest.json")["Body"].read())
    assert manifest["artifacts"] == [{"link": {"path": str(rootfs.url), "etag": expected,
                                               "type": "s3"}, "md5": md5(data),
                                      "type": ArtifactType.ROOTFS.value}]
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_no_manifest_when_an_artifact_fails(sbps_s3: S3, s3_client: Any, s3_bucket: str,
                                            squashfs_image: Callable[..., BuiltImage],
                                            tmp_path: Path) -> None:
    built = squashfs_image("fails")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")

    def refuse_kernel(params: dict[str, Any], **_: Any) -> None:
        # Redirect the kernel upload to a bucket that does not exist: a real S3 refusal.
        if params["Key"].endswith("/kernel"):
            params["Bucket"] = "no-such-bucket-sbps"

    sbps_s3.client.meta.events.register("before-parameter-build.s3.PutObject", refuse_kernel)
    with pytest.raises(NotFound, match="kernel"):
        upload_image(sbps_s3, s3_bucket, IMAGE_ID, built.path, kernel=kernel)
    assert set(listing(s3_client, s3_bucket)) == {f"{IMAGE_ID}/rootfs"}


def test_missing_bucket_writes_nothing(sbps_s3: S3, s3_client: Any,
                                       squashfs_image: Callable[..., BuiltImage]) -> None:
    built = squashfs_image("nobucket")
    with pytest.raises(UpstreamPermanentError):
        upload_image(sbps_s3, "no-such-bucket-sbps", IMAGE_ID, built.path)
    with pytest.raises(UpstreamPermanentError):
        upload_image(sbps_s3, "no-such-bucket-sbps", IMAGE_ID, built.path,
                     multipart_threshold=0, part_size=MIN_PART_SIZE)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x..y", "a\nb", "-lead", "a" * 200])
def test_rejects_unsafe_image_ids(sbps_s3: S3, s3_bucket: str, tmp_path: Path,
                                  bad: str) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.write_bytes(b"x")
    with pytest.raises(InputError, match="image_id"):
        upload_image(sbps_s3, s3_bucket, bad, rootfs)
    assert check_image_id(IMAGE_ID) == IMAGE_ID


def test_rejects_bad_inputs(sbps_s3: S3, s3_bucket: str, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.write_bytes(b"x")
    with pytest.raises(InputError, match="part_size"):
        upload_image(sbps_s3, s3_bucket, IMAGE_ID, rootfs, part_size=1024)
    with pytest.raises(InputError, match="not a regular file"):
        upload_image(sbps_s3, s3_bucket, IMAGE_ID, tmp_path / "missing")
    with pytest.raises(InputError, match="kernel"):
        upload_image(sbps_s3, s3_bucket, IMAGE_ID, rootfs, kernel=tmp_path)
    with pytest.raises(InputError, match="bucket"):
        upload_image(sbps_s3, "Bad_Bucket", IMAGE_ID, rootfs)


def test_multipart_etag_formula() -> None:
    digests = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert multipart_etag(digests) == hashlib.md5(b"".join(digests)).hexdigest() + "-2"


@pytest.mark.parametrize("multipart", [False, True])
def test_upload_ims_image_fixture(upload_ims_image: Callable[..., UploadedImage],
                                  ims_server: IMSServer, sbps_s3: S3, s3_client: Any,
                                  s3_bucket: str, multipart: bool) -> None:
    img = upload_ims_image("fixture", multipart=multipart)
    record = ims_server.get(img.ims_id)
    assert record == img.record
    assert record["link"] == {"path": img.manifest_url, "etag": img.manifest_etag,
                              "type": "s3"}
    assert record["metadata"] == {PROJECT_LABEL: "true"}
    assert img.manifest_url == f"s3://{s3_bucket}/{img.ims_id}/manifest.json"
    assert img.rootfs_url == f"s3://{s3_bucket}/{img.ims_id}/rootfs"
    data = img.path.read_bytes()
    assert (img.rootfs_size, img.rootfs_md5) == (len(data), md5(data))
    assert img.rootfs_parts == (2 if multipart else 0)
    assert img.rootfs_etag.endswith("-2") == multipart
    head = sbps_s3.head(S3Url(s3_bucket, f"{img.ims_id}/rootfs"))
    assert (head.etag, head.size) == (img.rootfs_etag, img.rootfs_size)
    assert isinstance(img.result, UploadResult) and len(img.result.artifacts) == 4
    assert img.marker.startswith("sbps test image fixture")
    unlabelled = upload_ims_image("plain", label=False, kernel=False, initrd=False,
                                  boot_parameters=None)
    assert ims_server.get(unlabelled.ims_id)["metadata"] == {}
    assert len(unlabelled.result.artifacts) == 1
    assert MARKER == "etc/sbps-test-marker"
