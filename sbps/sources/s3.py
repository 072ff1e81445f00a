"""The shared S3 client: credentials, endpoint, conditional writes and error translation.

Owns every boto3 call made by sbps (catalog, stager, claims, image builder). Calls are
blocking; async callers run them in executors. botocore errors become sbps.core.errors,
temporary (timeouts, resets, 5xx, throttling) or permanent (4xx), naming the object.
Every field read from an answer (ETag, Content-Length, a listing's Key and Size) is
checked: a missing or malformed one is a DecodeError (``bad_header``) for that object.
Must not know about images, LUNs or the target.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from sbps.config import S3Config
from sbps.core.decode import DecodeError
from sbps.core.errors import InputError, SbpsError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.core.model import ObjectInfo, S3Url

_URL_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")
_TEMPORARY_CODES = {"500", "502", "503", "504", "SlowDown", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "Throttling", "RequestTimeTooSkewed"}


class PreconditionFailed(UpstreamPermanentError):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""

    code = "precondition_failed"


class NotFound(UpstreamPermanentError):
    code = "not_found"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"


def read_credentials(path: str) -> Credentials:
    """The field agent's ``key:secret`` line, or an AWS credentials file ([default])."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise UpstreamPermanentError(
            f"s3.credential_file {path}: cannot read: {exc.strerror}", code="credentials"
        ) from None
    if "[" in text:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
            section = parser["default"] if "default" in parser else parser[parser.sections()[0]]
            return Credentials(section["aws_access_key_id"].strip(),
                               section["aws_secret_access_key"].strip())
        except (configparser.Error, KeyError, IndexError):
            pass
    else:
        line = text.strip().splitlines()[0] if text.strip() else ""
        if ":" in line:
            key, _, secret = line.partition(":")
            if key and secret:
                return Credentials(key.strip(), secret.strip())
    raise UpstreamPermanentError(
        f"s3.credential_file {path}: expected one line key:secret or an AWS credentials "
        "file with aws_access_key_id and aws_secret_access_key", code="credentials")


def parse_url(text: str) -> S3Url:
    """``s3://bucket/key`` with a valid bucket and a key without traversal or controls."""
    m = _URL_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an s3://bucket/key URL")
    key = m.group(2)
    check_key(key)
    return S3Url(m.group(1), key)


class ForeignBucket(InputError):
    """A link (manifest, rootfs, boot artifact, PE object) outside the allowed buckets."""

    code = "foreign_bucket"


def allowed_buckets(cfg: S3Config) -> frozenset[str]:
    """The buckets any link may point into: ``s3.bucket`` and ``s3.allowed_buckets``."""
    return frozenset((cfg.bucket, *cfg.allowed_buckets))


def confine(url: S3Url, allowed: Collection[str], obj: str, field: str) -> S3Url:
    """``url`` if its bucket is allowed; else ``ForeignBucket`` naming ``obj`` and ``field``.

    The one check every S3 link the catalog, the boot parameters and sbpsctl follow goes
    through: the marshal's credentials must never read (let alone export) an object that
    the record's author chose in a bucket the admin did not name.
    """
    if url.bucket not in allowed:
        raise ForeignBucket(obj, field, f"{url} is in bucket {url.bucket!r}, not in "
                            "s3.bucket or s3.allowed_buckets")
    return url


def check_key(key: str) -> None:
    """Reject keys that could escape a directory or confuse a log line."""
    if len(key) > 1024:
        raise ValueError("object key longer than 1024 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValueError(f"object key {key!r} contains control characters")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"object key {key!r} has an empty, '.' or '..' path segment")


def translate(exc: Exception, operation: str, url: S3Url | str) -> SbpsError:
    """Turn a botocore exception into a temporary or permanent sbps error."""
    what = f"S3 {operation} {url}"
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        message = f"{what}: {code or status} {err.get('Message', '')}".rstrip()
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == "412":
            return PreconditionFailed(message)
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == "404":
            return NotFound(message)
        if code in _TEMPORARY_CODES or status in _TEMPORARY_CODES:
            return UpstreamTemporaryError(message, code="s3_unavailable")
        return UpstreamPermanentError(message, code="s3_refused")
    if isinstance(exc, (botocore.exceptions.BotoCoreError, OSError)):
        return UpstreamTemporaryError(f"{what}: {exc}", code="s3_unavailable")
    return UpstreamPermanentError(f"{what}: {exc}", code="s3_refused")


_ETAG = re.compile(r'^"?([A-Za-z0-9-]{1,128})"?$')


def etag_of(r: Any, what: object) -> str:
    """The ETag of an S3 answer, without quotes; DecodeError when missing or malformed."""
    value = r.get("ETag") if isinstance(r, dict) else None
    m = _ETAG.match(value) if isinstance(value, str) else None
    if m is None:
        raise DecodeError("s3_header", str(what), f"ETag {str(value)[:80]!r} is missing or "
                          "not an S3 ETag", code="bad_header")
    return m.group(1)


def size_of(r: Any, what: object, name: str = "ContentLength") -> int:
    """A byte count of an S3 answer; DecodeError when missing, negative or not a number."""
    value = r.get(name) if isinstance(r, dict) else None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DecodeError("s3_header", str(what), f"{name} {str(value)[:40]!r} is missing "
                          "or not a byte count", code="bad_header")
    return value


def endpoint_of(cfg: S3Config) -> str:
    return cfg.endpoint or f"{cfg.proto}://{cfg.host}"


class S3:
    """A thin, typed wrapper over one boto3 client. Thread-safe as boto3 clients are."""

    def __init__(self, cfg: S3Config, credentials: Credentials, *, pool: int = 16) -> None:
        verify: bool | str = cfg.ca_bundle or cfg.verify_tls
        self.endpoint = endpoint_of(cfg)
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=cfg.region,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key, verify=verify,
            config=BotoConfig(s3={"addressing_style": "path"}, max_pool_connections=pool,
                              connect_timeout=cfg.timeout, read_timeout=cfg.timeout,
                              retries={"max_attempts": 3, "mode": "standard"}))

    def _call(self, operation: str, url: S3Url, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(Bucket=url.bucket, Key=url.key, **kwargs)
        except Exception as exc:
            raise translate(exc, operation, url) from exc

    def head(self, url: S3Url, part_number: int | None = None) -> ObjectInfo:
        """Size and ETag; with ``part_number=1`` also the multipart layout (PartsCount and
        the size of part 1), in a second request."""
        r = self._call("head_object", url)
        info = ObjectInfo(url, etag_of(r, url), size_of(r, url))
        if not part_number:
            return info
        p = self._call("head_object", url, PartNumber=part_number)
        parts = size_of(p, url, "PartsCount") if p.get("PartsCount") else 0
        part_size = size_of(p, url) if parts else 0
        return ObjectInfo(url, info.etag, info.size, parts, part_size)

    def get_bytes(self, url: S3Url, *, max_bytes: int = 16 * 2**20,
                  if_match: str | None = None) -> tuple[bytes, str]:
        """A small object's body and ETag (manifests, claims). Refuses oversized objects."""
        extra = {"IfMatch": f'"{if_match}"'} if if_match else {}
        r = self._call("get_object", url, **extra)
        expected = size_of(r, url) if r.get("ContentLength") is not None else None
        if (expected or 0) > max_bytes:
            r["Body"].close()
            raise DecodeError("s3_object", str(url), f"larger than {max_bytes} bytes",
                              code="too_large")
        etag = etag_of(r, url)
        try:
            body = r["Body"].read(max_bytes + 1)
        except Exception as exc:
            raise translate(exc, "get_object", url) from exc
        if len(body) > max_bytes:
            raise DecodeError("s3_object", str(url), f"larger than {max_bytes} bytes",
                              code="too_large")
        # read(amt) does not check the length: a connection closed early gives a short body.
        if expected is not None and len(body) != expected:
            raise UpstreamTemporaryError(f"S3 get {url}: {len(body)} of {expected} bytes "
                                         "received", code="s3_unavailable")
        return body, etag

    def get_range(self, url: S3Url, start: int, end: int, *, if_match: str) -> Iterator[bytes]:
        """Stream bytes start..end (inclusive) of one version of an object."""
        r = self._call("get_object", url, Range=f"bytes={start}-{end}", IfMatch=f'"{if_match}"')
        try:
            yield from r["Body"].iter_chunks(1 << 20)
        except Exception as exc:
            raise translate(exc, "get_object", url) from exc

    def put_bytes(self, url: S3Url, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str = "") -> str:
        """Write a small object, optionally only if absent or unchanged. Returns the ETag."""
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match:
            # Unquoted: Ceph RGW compares a PUT's If-Match byte for byte with its stored,
            # unquoted ETag (a quoted one never matches); AWS and moto accept both forms.
            extra["IfMatch"] = if_match
        if content_type:
            extra["ContentType"] = content_type
        r = self._call("put_object", url, Body=body, **extra)
        return etag_of(r, url)

    def delete(self, url: S3Url) -> None:
        self._call("delete_object", url)

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under a prefix, paginated. Never call it on a whole bucket."""
        if not prefix:
            raise ValueError("listing a whole bucket is not allowed; give a prefix")
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    where = f"s3://{bucket}/{obj.get('Key')}"
                    key = obj.get("Key")
                    if not isinstance(key, str) or not key:
                        raise DecodeError("s3_header", f"s3://{bucket}/{prefix}", "a listed "
                                          "object without a key", code="bad_header")
                    yield ObjectInfo(S3Url(bucket, key), etag_of(obj, where),
                                     size_of(obj, where, "Size"))
        except DecodeError:
            raise
        except Exception as exc:
            raise translate(exc, "list_objects_v2", f"s3://{bucket}/{prefix}") from exc
