"""Reading one image for its boot parameters: the IMS record, its manifest, its artifacts.

Owns ``ImageSource`` (the protocol) and ``CatalogImageSource``, built on the catalog's IMS
client and manifest parser, so ``sbpsctl bootparams`` reads an image exactly as the daemon
does (every ``catalog.auth`` mode included), through the same bucket rule: every link it
follows (the manifest, the boot-parameters artifact) and every artifact of the manifest
must be in ``s3.bucket`` or ``s3.allowed_buckets`` (``foreign_bucket``). Also owns
``produce``, which renders one request. ``GET /v1/bootparams/{id}`` does not read through
here: it serves what the pass cached (``sbps.publish.http.bootdoc``). Must not decide grammar or
formats: those belong to ``sbps.publish.boot.params`` and ``sbps.publish.boot.formats``.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from sbps.core.errors import InputError
from sbps.core.model import ImageRecord, Manifest, Problem, S3Url
from sbps.publish.boot import formats as bootformats
from sbps.sources.catalog import ImsClient
from sbps.sources.catalog.parse import parse_manifest
from sbps.sources.catalog.rules import foreign_links
from sbps.sources.s3 import S3, confine

MAX_MANIFEST = 4 << 20
MAX_TEXT = 1 << 20
IMS_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")


class ImageSource(Protocol):
    async def image(self, ims_id: str) -> ImageRecord: ...

    async def manifest(self, record: ImageRecord) -> Manifest: ...

    async def text(self, url: S3Url) -> str: ...


class CatalogImageSource:
    """IMS through ``ImsClient``, S3 through the shared client (in an executor), links
    confined to ``allowed`` (``sbps.sources.s3.allowed_buckets``)."""

    def __init__(self, ims: ImsClient, s3: S3, allowed: Collection[str]) -> None:
        self.ims = ims
        self.s3 = s3
        self.allowed = frozenset(allowed)

    async def image(self, ims_id: str) -> ImageRecord:
        if not IMS_ID_RE.match(ims_id):
            raise InputError("IMAGE_ID", "id", f"{ims_id!r} is not an IMS image id")
        return await self.ims.get_record(ims_id)

    async def _get(self, url: S3Url, max_bytes: int) -> bytes:
        call = functools.partial(self.s3.get_bytes, url, max_bytes=max_bytes)
        body, _etag = await asyncio.get_running_loop().run_in_executor(None, call)
        return body

    async def manifest(self, record: ImageRecord) -> Manifest:
        if record.manifest is None:
            raise InputError(f"IMS image {record.ims_id}", "link", "no manifest")
        url = confine(record.manifest, self.allowed, record.ims_id, "link.path")
        parsed = parse_manifest(record.ims_id, await self._get(url, MAX_MANIFEST))
        if isinstance(parsed, Problem):
            raise InputError(parsed.obj, parsed.field, parsed.reason, code=parsed.code)
        foreign = foreign_links(record.ims_id, parsed, self.allowed)
        if foreign is not None:
            raise InputError(foreign.obj, foreign.field, foreign.reason, code=foreign.code)
        return parsed

    async def text(self, url: S3Url) -> str:
        confine(url, self.allowed, str(url), "boot_parameters")
        body = await self._get(url, MAX_TEXT)
        try:
            return body.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(str(url), "boot_parameters", "not UTF-8 text") from exc


@dataclass(frozen=True)
class ImageRequest:
    """What one boot-parameters request asks for, resolved against the configuration."""

    ims_id: str
    srv_name: str
    iqn_prefix: str
    timeout: int
    ramroot: bool
    fmt: str
    name: str = ""
    configuration: str = ""


async def produce(source: ImageSource, req: ImageRequest) -> tuple[str, list[str]]:
    """The requested output for one image, and warnings for the caller to show."""
    warnings: list[str] = []
    record = await source.image(req.ims_id)
    manifest = await source.manifest(record)
    params = bootformats.for_image(record, manifest, srv_name=req.srv_name,
                                   iqn_prefix=req.iqn_prefix, timeout=req.timeout,
                                   ramroot=req.ramroot)
    text = ""
    if req.fmt == "cmdline":
        url = bootformats.boot_parameters_url(manifest)
        if url is None:
            warnings.append(f"image {record.ims_id}: the manifest has no boot-parameters "
                            "artifact; printing root= alone")
        else:
            text = await source.text(url)
    out = bootformats.render(req.fmt, params, record, text, name=req.name,
                             configuration=req.configuration)
    return out, warnings
