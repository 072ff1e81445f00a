"""The claim objects in the shared bucket: read, create, replace, list.

Owns the object names (``<prefix>/luns/<id>``, ``<prefix>/keys/<digest>``) and the
conditional writes on them: creation with If-None-Match ``*`` (first writer wins) and
replacement with If-Match on the version that was read (a writer that read a stale
version loses). Blocking; the registry is called in an executor. Must not decide who
should win: that is the registry's job.
"""

from __future__ import annotations

import logging

from sbps.core.model import Claim, S3Url
from sbps.sources.claims.codec import (
    IndexRecord,
    claim_from_bytes,
    claim_to_bytes,
    index_from_bytes,
    index_to_bytes,
)
from sbps.sources.claims.journal import Entry, IndexEntry
from sbps.sources.s3 import S3, NotFound

log = logging.getLogger(__name__)
_CONTENT_TYPE = "application/json"
_MAX_BODY = 64 * 1024


class ClaimStore:
    def __init__(self, s3: S3, bucket: str, prefix: str = ".sbps") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def lun_url(self, lun_id: int) -> S3Url:
        return S3Url(self.bucket, f"{self.prefix}/luns/{lun_id}")

    def key_url(self, digest: str) -> S3Url:
        return S3Url(self.bucket, f"{self.prefix}/keys/{digest}")

    def read_claim(self, lun_id: int) -> Entry | None:
        """The claim on an id, or None if the id was never claimed."""
        url = self.lun_url(lun_id)
        try:
            body, etag = self.s3.get_bytes(url, max_bytes=_MAX_BODY)
        except NotFound:
            return None
        return Entry(claim_from_bytes(body, str(url), lun_id), etag)

    def create_claim(self, claim: Claim) -> Entry:
        """Create the claim; raises PreconditionFailed if the id is already claimed."""
        etag = self.s3.put_bytes(self.lun_url(claim.lun_id), claim_to_bytes(claim),
                                 if_none_match=True, content_type=_CONTENT_TYPE)
        return Entry(claim, etag)

    def replace_claim(self, claim: Claim, etag: str) -> Entry:
        """Replace the version ``etag``; raises PreconditionFailed if it changed."""
        new = self.s3.put_bytes(self.lun_url(claim.lun_id), claim_to_bytes(claim),
                                if_match=etag, content_type=_CONTENT_TYPE)
        return Entry(claim, new)

    def read_index(self, digest: str) -> tuple[IndexRecord, IndexEntry] | None:
        url = self.key_url(digest)
        try:
            body, etag = self.s3.get_bytes(url, max_bytes=_MAX_BODY)
        except NotFound:
            return None
        rec = index_from_bytes(body, str(url), digest)
        return rec, IndexEntry(rec.lun_id, etag)

    def publish_index(self, rec: IndexRecord, replace: str | None) -> IndexEntry:
        """Create the index record, or replace the stale version ``replace``.

        Raises PreconditionFailed when another worker published first.
        """
        url = self.key_url(rec.digest)
        body = index_to_bytes(rec)
        if replace is None:
            etag = self.s3.put_bytes(url, body, if_none_match=True,
                                     content_type=_CONTENT_TYPE)
        else:
            etag = self.s3.put_bytes(url, body, if_match=replace, content_type=_CONTENT_TYPE)
        return IndexEntry(rec.lun_id, etag)

    def list_claims(self) -> dict[int, str]:
        """Every claimed id and the ETag of its object, from one paginated listing."""
        out: dict[int, str] = {}
        base = f"{self.prefix}/luns/"
        for info in self.s3.list(self.bucket, base):
            name = info.url.key[len(base):]
            if not name.isdigit() or name != str(int(name)):
                log.warning("ignoring foreign object in the claim registry",
                            extra={"object": str(info.url)})
                continue
            out[int(name)] = info.etag
        return out
