"""Uploading a built image exactly as IMS lays it out in S3, manifest last.

Owns the layout ``<bucket>/<image id>/{rootfs,kernel,initrd,boot_parameters}``, single-part
and multipart uploads with MD5s computed from the bytes sent, ETag verification (plain MD5,
or the MD5 of the part MD5s plus ``-N``), and ``manifest.json`` written only after every
artifact is in place and verified, so a reader never sees a manifest naming a missing or
partial object. boto3 calls go through the shared ``sbps.sources.s3.S3`` client, errors translated.
Blocking: async callers run it in an executor. Must not talk to IMS.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sbps.core.errors import InputError, VerificationError
from sbps.core.model import ArtifactType, S3Url
from sbps.sources.s3 import S3, NotFound, parse_url, translate

log = logging.getLogger(__name__)

MiB = 2**20
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The object names IMS uses under <image id>/, in the order they are uploaded.
OBJECT_NAMES = {ArtifactType.ROOTFS: "rootfs", ArtifactType.KERNEL: "kernel",
                ArtifactType.INITRD: "initrd", ArtifactType.BOOT_PARAMETERS: "boot_parameters"}
MANIFEST_TYPE = "application/json"
#: ``progress(object url, bytes sent, total bytes)``, called after each part.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class UploadedArtifact:
    """One artifact as written: its URL, S3 ETag (no quotes), MD5, size and part count
    (0 for a single-part upload)."""

    type: ArtifactType
    url: S3Url
    etag: str
    md5: str
    size: int
    parts: int = 0


@dataclass(frozen=True)
class UploadResult:
    image_id: str
    manifest_url: S3Url
    manifest_etag: str
    artifacts: tuple[UploadedArtifact, ...]
    #: Objects found intact in S3 and not uploaded again (``reuse=True``).
    reused: tuple[str, ...] = ()

    def artifact(self, kind: ArtifactType) -> UploadedArtifact:
        for art in self.artifacts:
            if art.type is kind:
                return art
        raise KeyError(kind)

    @property
    def rootfs(self) -> UploadedArtifact:
        return self.artifact(ArtifactType.ROOTFS)


def check_image_id(image_id: str) -> str:
    """A uuid or a safe name: one path segment, no '..', no control characters."""
    if not isinstance(image_id, str) or not _SAFE_ID.match(image_id) or ".." in image_id:
        raise InputError(repr(image_id), "image_id",
                         "must be a uuid or a name of letters, digits, '.', '_', '-' "
                         "(at most 128, no '/', no '..')")
    return image_id


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the concatenated part MD5s, ``-N``."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def _content_md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _verify(url: S3Url, got: str, want: str, what: str) -> None:
    if got != want:
        raise VerificationError(f"{url}: {what} ETag {got!r} does not match the uploaded "
                                f"bytes ({want!r})", code="etag_mismatch")


class _Uploader:
    """Per-call state: the client, the size policy and the image being written."""

    def __init__(self, s3: S3, threshold: int, part_size: int, *, reuse: bool = False,
                 progress: Progress | None = None) -> None:
        self.s3 = s3
        self.threshold = threshold
        self.part_size = part_size
        self.reuse = reuse
        self.progress = progress
        self.reused: list[str] = []

    def call(self, operation: str, url: S3Url, **kwargs: Any) -> Any:
        try:
            return getattr(self.s3.client, operation)(Bucket=url.bucket, Key=url.key,
                                                      **kwargs)
        except Exception as exc:
            raise translate(exc, operation, url) from exc

    def put_single(self, url: S3Url, body: bytes, content_type: str = "") -> tuple[str, str]:
        digest = hashlib.md5(body)
        extra = {"ContentType": content_type} if content_type else {}
        r = self.call("put_object", url, Body=body, ContentMD5=_content_md5(digest.digest()),
                      **extra)
        etag = str(r["ETag"]).strip('"')
        _verify(url, etag, digest.hexdigest(), "single-part")
        return etag, digest.hexdigest()

    def put_multipart(self, url: S3Url, fh: BinaryIO) -> tuple[str, str, int]:
        whole = hashlib.md5()
        part_md5s: list[bytes] = []
        parts: list[dict[str, Any]] = []
        upload_id = str(self.call("create_multipart_upload", url)["UploadId"])
        try:
            while chunk := fh.read(self.part_size):
                number = len(parts) + 1
                digest = hashlib.md5(chunk)
                whole.update(chunk)
                r = self.call("upload_part", url, UploadId=upload_id, PartNumber=number,
                              Body=chunk, ContentMD5=_content_md5(digest.digest()))
                _verify(url, str(r["ETag"]).strip('"'), digest.hexdigest(), f"part {number}")
                part_md5s.append(digest.digest())
                parts.append({"PartNumber": number, "ETag": r["ETag"]})
                if self.progress is not None:
                    self.progress(str(url), fh.tell(), os.fstat(fh.fileno()).st_size)
            r = self.call("complete_multipart_upload", url, UploadId=upload_id,
                          MultipartUpload={"Parts": parts})
        except BaseException:
            self.abort(url, upload_id)
            raise
        etag = str(r.get("ETag") or "").strip('"')
        if not etag:  # Ceph RGW 16.2 answers CompleteMultipartUpload with an empty <ETag>
            etag = str(self.call("head_object", url)["ETag"]).strip('"')
        _verify(url, etag, multipart_etag(part_md5s), "multipart")
        return etag, whole.hexdigest(), len(parts)

    def abort(self, url: S3Url, upload_id: str) -> None:
        try:
            self.s3.client.abort_multipart_upload(Bucket=url.bucket, Key=url.key,
                                                  UploadId=upload_id)
        except Exception as exc:  # the original failure matters more; S3 expires it anyway
            log.warning("cannot abort multipart upload", extra={
                "object": str(url), "upload_id": upload_id, "error": str(exc)})

    def expected(self, fh: BinaryIO, size: int) -> tuple[str, str, int]:
        """The ETag, MD5 and part count an upload of ``fh`` with this policy gives."""
        whole = hashlib.md5()
        if size <= self.threshold:
            whole.update(fh.read())
            return whole.hexdigest(), whole.hexdigest(), 0
        part_md5s = []
        while chunk := fh.read(self.part_size):
            whole.update(chunk)
            part_md5s.append(hashlib.md5(chunk).digest())
        return multipart_etag(part_md5s), whole.hexdigest(), len(part_md5s)

    def intact(self, kind: ArtifactType, url: S3Url, fh: BinaryIO,
               size: int) -> UploadedArtifact | None:
        """The object already in S3 if it holds exactly these bytes (size and ETag)."""
        try:
            info = self.s3.head(url)
        except NotFound:
            return None
        if info.size != size:
            return None
        etag, md5, parts = self.expected(fh, size)
        fh.seek(0)
        if info.etag != etag:
            return None
        self.reused.append(str(url))
        log.info("reusing intact object", extra={"object": str(url), "etag": etag})
        return UploadedArtifact(kind, url, etag, md5, size, parts)

    def put_file(self, kind: ArtifactType, url: S3Url, path: Path) -> UploadedArtifact:
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InputError(str(path), kind.value, f"cannot read: {exc.strerror}") from exc
        with fh:
            size = path.stat().st_size
            if self.reuse and (same := self.intact(kind, url, fh, size)) is not None:
                return same
            if size > self.threshold:
                if -(-size // self.part_size) > MAX_PARTS:
                    raise InputError(str(path), "part_size",
                                     f"{self.part_size} gives more than {MAX_PARTS} parts "
                                     f"for {size} bytes")
                etag, md5, parts = self.put_multipart(url, fh)
                return UploadedArtifact(kind, url, etag, md5, size, parts)
            etag, md5 = self.put_single(url, fh.read())
        if self.progress is not None:
            self.progress(str(url), size, size)
        return UploadedArtifact(kind, url, etag, md5, size)


def manifest_document(artifacts: tuple[UploadedArtifact, ...], created: datetime) -> bytes:
    """IMS's manifest.json, version 1.0, one entry per artifact."""
    doc = {"version": "1.0", "created": created.isoformat(), "artifacts": [
        {"link": {"path": str(a.url), "etag": a.etag, "type": "s3"}, "md5": a.md5,
         "type": a.type.value} for a in artifacts]}
    return json.dumps(doc, indent=2).encode("utf-8")


def upload_image(s3: S3, bucket: str, image_id: str, rootfs: Path, *,
                 kernel: Path | None = None, initrd: Path | None = None,
                 boot_parameters: str | None = None, multipart_threshold: int = 64 * MiB,
                 part_size: int = 16 * MiB, reuse: bool = False,
                 progress: Progress | None = None) -> UploadResult:
    """Upload the artifacts under ``<bucket>/<image id>/`` and then ``manifest.json``.

    Files larger than ``multipart_threshold`` go up in ``part_size`` parts. Any failure
    raises (sbps.core.errors) before the manifest is written; objects already written stay.
    ``reuse`` skips an artifact already in S3 with the same size and the ETag these bytes
    would get (what a re-run after a failure finds); ``UploadResult.reused`` lists them.
    """
    check_image_id(image_id)
    if part_size < MIN_PART_SIZE:
        raise InputError(image_id, "part_size", f"{part_size} is below S3's minimum "
                         f"part size {MIN_PART_SIZE}")
    if multipart_threshold < 0:
        raise InputError(image_id, "multipart_threshold", "must not be negative")
    try:
        base = parse_url(f"s3://{bucket}/{image_id}/manifest.json")
    except ValueError as exc:
        raise InputError(bucket, "bucket", str(exc)) from exc
    files = {ArtifactType.ROOTFS: Path(rootfs), ArtifactType.KERNEL: kernel,
             ArtifactType.INITRD: initrd}
    for kind, path in files.items():
        if path is not None and not Path(path).is_file():
            raise InputError(str(path), kind.value, "is not a regular file")
    up = _Uploader(s3, multipart_threshold, part_size, reuse=reuse, progress=progress)
    written: list[UploadedArtifact] = []
    for kind, path in files.items():
        if path is None:
            continue
        url = S3Url(bucket, f"{image_id}/{OBJECT_NAMES[kind]}")
        written.append(up.put_file(kind, url, Path(path)))
        log.info("uploaded artifact", extra={"image_id": image_id, "object": str(url),
                                             "etag": written[-1].etag})
    if boot_parameters is not None:
        url = S3Url(bucket, f"{image_id}/{OBJECT_NAMES[ArtifactType.BOOT_PARAMETERS]}")
        body = boot_parameters.encode("utf-8")
        kind = ArtifactType.BOOT_PARAMETERS
        same = up.intact(kind, url, io.BytesIO(body), len(body)) if reuse else None
        if same is None:
            etag, md5 = up.put_single(url, body)
            same = UploadedArtifact(kind, url, etag, md5, len(body))
        written.append(same)
    artifacts = tuple(written)
    manifest_etag, _ = up.put_single(base, manifest_document(artifacts, datetime.now(UTC)),
                                    MANIFEST_TYPE)
    log.info("uploaded manifest", extra={"image_id": image_id, "object": str(base),
                                         "etag": manifest_etag})
    return UploadResult(image_id, base, manifest_etag, artifacts, tuple(up.reused))
