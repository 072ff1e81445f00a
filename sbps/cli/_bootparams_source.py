"""Where ``sbpsctl bootparams IMAGE_ID`` reads an image: IMS for the record, S3 for the rest.

Owns the ``ImageSource`` protocol the command is written against and its IMS/S3-backed
implementation: one GET of ``<catalog.api_gateway>/<catalog.ims_uri>/<id>`` (auth
``none`` or ``token-file``) and ``S3.get_bytes`` for the manifest and the
boot-parameters artifact. Record and manifest parsing here is minimal and strict (one
image, asked for by an admin, fails loudly); the daemon's tolerant parsing belongs to
``sbps.catalog``. Must not decide anything about boot parameters.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from sbps.config import Config
from sbps.errors import (
    ConfigError,
    InputError,
    UpstreamPermanentError,
    UpstreamTemporaryError,
)
from sbps.model import Arch, Artifact, ImageRecord, Manifest, S3Url
from sbps.s3 import S3, parse_url, read_credentials

MAX_RECORD = 1 << 20
MAX_MANIFEST = 4 << 20
MAX_TEXT = 1 << 20
IMS_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")


class ImageSource(Protocol):
    async def image(self, ims_id: str) -> ImageRecord: ...

    async def manifest(self, record: ImageRecord) -> Manifest: ...

    async def text(self, url: S3Url) -> str: ...


def _created(value: Any) -> datetime | None:
    # Only informative here; the field has several formats and a bad one is not fatal.
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _url(obj: str, field: str, value: Any) -> S3Url:
    if not isinstance(value, str):
        raise InputError(obj, field, "missing or not a string")
    try:
        return parse_url(value)
    except ValueError as exc:
        raise InputError(obj, field, str(exc)) from exc


def _etag(obj: str, field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(obj, field, "not a string")
    return value.strip('"')


def parse_record(data: Any, ims_id: str) -> ImageRecord:
    """An IMS image record (``GET /v3/images/<id>``), strictly."""
    obj = f"IMS image {ims_id}"
    if not isinstance(data, dict):
        raise InputError(obj, "(body)", "not a JSON object")
    if data.get("id") != ims_id:
        raise InputError(obj, "id", f"{data.get('id')!r} is not the image asked for")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise InputError(obj, "name", "not a string")
    try:
        arch = Arch(data.get("arch") or Arch.X86_64.value)
    except ValueError as exc:
        raise InputError(obj, "arch", f"{data.get('arch')!r} is not one of "
                         + ", ".join(a.value for a in Arch)) from exc
    link = data.get("link")
    if not link:
        raise InputError(obj, "link", "missing: the image has no manifest in S3")
    if not isinstance(link, dict):
        raise InputError(obj, "link", "not an object")
    if link.get("type", "s3") != "s3":
        raise InputError(obj, "link.type", f"{link.get('type')!r} is not 's3'")
    meta = data.get("metadata") or {}
    if isinstance(meta, list):
        meta = {str(m.get("key")): str(m.get("value", "")) for m in meta
                if isinstance(m, dict) and "key" in m}
    if not isinstance(meta, dict):
        raise InputError(obj, "metadata", "neither an object nor a list of {key, value}")
    return ImageRecord(
        ims_id=ims_id, name=name, created=_created(data.get("created")), arch=arch,
        manifest=_url(obj, "link.path", link.get("path")),
        manifest_etag=_etag(obj, "link.etag", link.get("etag")),
        metadata={str(k): str(v) for k, v in meta.items()})


def parse_manifest(body: bytes, url: S3Url) -> Manifest:
    """An image ``manifest.json``, strictly."""
    obj = f"manifest {url}"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(obj, "(body)", f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(obj, "(body)", "not a JSON object")
    version = data.get("version", "")
    if not isinstance(version, str):
        raise InputError(obj, "version", "not a string")
    items = data.get("artifacts")
    if not isinstance(items, list):
        raise InputError(obj, "artifacts", "missing or not a list")
    artifacts = []
    for i, item in enumerate(items):
        where = f"artifacts[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("link"), dict):
            raise InputError(obj, f"{where}.link", "missing or not an object")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise InputError(obj, f"{where}.type", "missing or not a string")
        md5 = item.get("md5")
        artifacts.append(Artifact(
            url=_url(obj, f"{where}.link.path", item["link"].get("path")),
            etag=_etag(obj, f"{where}.link.etag", item["link"].get("etag")),
            md5=md5 if isinstance(md5, str) and md5 else None, type=kind))
    return Manifest(version=version, created=_created(data.get("created")),
                    artifacts=tuple(artifacts))


def _ssl(cfg: Config) -> ssl.SSLContext | bool:
    if not cfg.catalog.verify_tls:
        return False
    if cfg.catalog.ca_bundle:
        return ssl.create_default_context(cafile=cfg.catalog.ca_bundle)
    return True


def _token(cfg: Config) -> str | None:
    auth = cfg.catalog.auth
    if auth == "none":
        return None
    if auth != "token-file":
        raise ConfigError("catalog.auth", auth, "sbpsctl bootparams supports none and "
                          "token-file")
    try:
        with open(cfg.catalog.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ConfigError("catalog.token_file", cfg.catalog.token_file,
                          f"cannot read: {exc.strerror}") from None
    if not token:
        raise ConfigError("catalog.token_file", cfg.catalog.token_file, "the file is empty")
    return token


class ImsS3Source:
    """Reads one image from IMS and S3 as the configuration says."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._s3: S3 | None = None

    def _client(self) -> S3:
        if self._s3 is None:
            s3cfg = self._cfg.s3
            self._s3 = S3(s3cfg, read_credentials(s3cfg.credential_file))
        return self._s3

    async def image(self, ims_id: str) -> ImageRecord:
        if not IMS_ID_RE.match(ims_id):
            raise InputError("IMAGE_ID", "id", f"{ims_id!r} is not an IMS image id")
        cat = self._cfg.catalog
        url = f"{cat.api_gateway.rstrip('/')}/{cat.ims_uri.strip('/')}/{ims_id}"
        headers = {"Accept": "application/json"}
        token = _token(self._cfg)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        what = f"IMS GET {url}"
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=cat.timeout)) as session, \
                    session.get(url, headers=headers, ssl=_ssl(self._cfg)) as r:
                status = r.status
                body = await r.content.read(MAX_RECORD + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamTemporaryError(f"{what}: {exc or type(exc).__name__}",
                                         code="ims_unavailable") from exc
        if status == 404:
            raise UpstreamPermanentError(f"{what}: no such image", code="not_found")
        if status in (401, 403):
            raise UpstreamPermanentError(f"{what}: {status} refused (check catalog.auth)",
                                         code="ims_refused")
        if status == 429 or status >= 500:
            raise UpstreamTemporaryError(f"{what}: {status}", code="ims_unavailable")
        if status != 200:
            raise UpstreamPermanentError(f"{what}: {status}", code="ims_refused")
        if len(body) > MAX_RECORD:
            raise InputError(f"IMS image {ims_id}", "(body)", "larger than 1 MiB")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"IMS image {ims_id}", "(body)", f"not JSON: {exc}") from exc
        return parse_record(data, ims_id)

    async def _get(self, url: S3Url, max_bytes: int) -> bytes:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._client().get_bytes, url, max_bytes=max_bytes)
        body, _etag = await loop.run_in_executor(None, call)
        return body

    async def manifest(self, record: ImageRecord) -> Manifest:
        if record.manifest is None:
            raise InputError(f"IMS image {record.ims_id}", "link", "no manifest")
        return parse_manifest(await self._get(record.manifest, MAX_MANIFEST),
                              record.manifest)

    async def text(self, url: S3Url) -> str:
        body = await self._get(url, MAX_TEXT)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(str(url), "(body)", "not UTF-8 text") from exc
