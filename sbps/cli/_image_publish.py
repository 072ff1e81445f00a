"""The remote half of ``image build``: IMS record, upload, link, label, boot parameters.

Owns the order that keeps IMS honest. IMS assigns image ids and IMS lays images out under
``<bucket>/<id>/``, so the record must exist before the upload. It is therefore created
*without a link and without the label*, carrying ``sbps-build-digest`` in its metadata;
the artifacts go up (intact ones found by a re-run are reused after a size and ETag
comparison); ``manifest.json`` is written last; only then is the link PATCHed, and then
the label. A failure at any point leaves at most a record with no link: it points at
nothing, neither the daemon (no label, no manifest) nor BOS (no link) can use it, and the
next run of the same build finds it by name and digest and resumes under the same id,
reusing what was uploaded. Deleting it instead would throw the partial upload away (the
next run gets a new id, hence a new prefix) and a process killed mid-upload could not
delete anything anyway. Must not build images (``sbps.imagebuild.pipeline`` does).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from dataclasses import dataclass
from typing import Any

from sbps.config import Config
from sbps.core.errors import ConfigError, InputError, SbpsError, UpstreamPermanentError
from sbps.core.model import Arch, Artifact, ArtifactType, ImageRecord, Manifest, Problem
from sbps.imagebuild.pipeline import DIGEST_KEY, BuildRequest, Prepared
from sbps.imagebuild.upload import UploadResult, upload_image
from sbps.publish.boot import formats as bootformats
from sbps.publish.boot import params as bootparams
from sbps.sources.catalog import ImsClient, make_auth
from sbps.sources.catalog.parse import parse_manifest, parse_record
from sbps.sources.s3 import S3, NotFound, parse_url, read_credentials, translate


@dataclass(frozen=True)
class Published:
    image_id: str
    record_reused: bool
    already_complete: bool
    upload: UploadResult | None
    labelled: str | None
    manifest_url: str
    manifest_etag: str
    manifest: Manifest


def steps(req: BuildRequest, cfg: Config, label: bool) -> list[str]:
    """What ``publish`` does, in order, for ``--dry-run``."""
    bucket = cfg.s3.bucket
    out = [f"look up IMS records named {req.name!r} with metadata {DIGEST_KEY}=<digest> "
           f"({cfg.catalog.api_gateway}/{cfg.catalog.ims_uri}); reuse one if found",
           f"otherwise POST a record {{name, arch: {req.arch}, metadata: {{{DIGEST_KEY}}}}} "
           "with no link and no label",
           f"upload to s3://{bucket}/<id>/: rootfs"
           + (", kernel" if req.kernel else "") + (", initrd" if req.initrd else "")
           + (", boot_parameters" if req.boot_parameters is not None else "")
           + " (multipart above 64 MiB; objects already there with the same ETag are kept)",
           f"write s3://{bucket}/<id>/manifest.json last",
           "PATCH the record's link to the manifest (path, etag, type s3)"]
    out.append(f"PATCH metadata {cfg.catalog.label_key}=true" if label else
               "leave the record unlabelled (--no-label)")
    out.append("print the image id and its boot parameters")
    return out


class _Progress:
    """Upload progress lines on stderr, at most one per second per object."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def __call__(self, url: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last.get(url, 0.0) < 1.0:
            return
        self.last[url] = now
        pct = 100 * done // total if total else 100
        print(f"sbpsctl image build: uploading {url}: {pct}% ({done >> 20} of "
              f"{total >> 20} MiB)", file=sys.stderr)


def _metadata(raw: dict[str, Any]) -> dict[str, str]:
    parsed = parse_record(raw)
    return dict(parsed.metadata) if not isinstance(parsed, Problem) else {}


async def _find(ims: ImsClient, name: str, digest: str) -> dict[str, Any] | None:
    """A record of an earlier run of this very build (same name and digest), linked
    records first."""
    hits = [r for r in await ims.list_images() if isinstance(r, dict)
            and r.get("name") == name and _metadata(r).get(DIGEST_KEY) == digest]
    hits.sort(key=lambda r: (not r.get("link"), str(r.get("created", ""))))
    return hits[0] if hits else None


def _bucket_check(s3: S3, bucket: str) -> None:
    try:
        s3.client.head_bucket(Bucket=bucket)
    except Exception as exc:
        err = translate(exc, "head_bucket", f"s3://{bucket}")
        if err.temporary:
            raise err from exc
        raise ConfigError("s3.bucket", bucket, f"not usable: {err}") from exc


async def publish(cfg: Config, req: BuildRequest, built: Prepared, *, label: bool,
                  progress: bool, ims: ImsClient | None = None,
                  s3: S3 | None = None) -> Published:
    loop = asyncio.get_running_loop()
    s3 = s3 or S3(cfg.s3, read_credentials(cfg.s3.credential_file))
    bucket = cfg.s3.bucket
    await loop.run_in_executor(None, _bucket_check, s3, bucket)
    client = ims or ImsClient(cfg.catalog, make_auth(cfg.catalog))
    try:
        found = await _find(client, req.name, built.digest)
        image_id = str(found["id"]) if found else ""
        done = await _manifest_intact(s3, bucket, found) if found else None
        if found and done is not None:
            labelled = await _label(client, cfg, image_id, label)
            return Published(image_id, True, True, None, labelled, str(found["link"]["path"]),
                             str(found["link"].get("etag", "")).strip('"'), done)
        if not found:
            record = await client.create_image(req.name, req.arch,
                                               metadata={DIGEST_KEY: built.digest})
            image_id = str(record["id"])
        call = functools.partial(
            upload_image, s3, bucket, image_id, built.squashfs, kernel=built.kernel,
            initrd=built.initrd, boot_parameters=req.boot_parameters, reuse=True,
            progress=_Progress() if progress else None)
        try:
            result = await loop.run_in_executor(None, call)
        except SbpsError as exc:
            if isinstance(exc, UpstreamPermanentError) and exc.code in ("s3_refused",
                                                                         "not_found"):
                raise ConfigError("s3.bucket", bucket, f"cannot write the image: {exc}; "
                                  f"IMS record {image_id} has no link and is reused by "
                                  "the next run") from exc
            raise type(exc)(f"{exc} (IMS record {image_id} has no link, so nothing points "
                            "at the partial upload; run the same build again to resume)",
                            code=exc.code) from exc
        link = {"path": str(result.manifest_url), "etag": result.manifest_etag, "type": "s3"}
        await client.set_link(image_id, link)
        labelled = await _label(client, cfg, image_id, label)
        return Published(image_id, bool(found), False, result, labelled,
                         str(result.manifest_url), result.manifest_etag, manifest_of(result))
    finally:
        if ims is None:
            await client.close()


async def _manifest_intact(s3: S3, bucket: str, record: dict[str, Any]) -> Manifest | None:
    """The record's manifest, if it is where this build puts it, has the linked ETag and
    parses; None means the build must (re)upload."""
    link = record.get("link")
    want = f"s3://{bucket}/{record['id']}/manifest.json"
    if not isinstance(link, dict) or link.get("path") != want:
        return None
    loop = asyncio.get_running_loop()
    try:
        body, etag = await loop.run_in_executor(None, s3.get_bytes, parse_url(want))
    except NotFound:
        return None
    if etag != str(link.get("etag", "")).strip('"'):
        return None
    manifest = parse_manifest(str(record["id"]), body)
    return None if isinstance(manifest, Problem) else manifest


async def _label(client: ImsClient, cfg: Config, image_id: str, label: bool) -> str | None:
    if not label:
        return None
    await client.patch_label(image_id, cfg.catalog.label_key, "true")
    return cfg.catalog.label_key


def boot_parameters(cfg: Config, req: BuildRequest,
                    pub: Published) -> tuple[dict[str, Any], str]:
    """(JSON fields, text) of the image's boot parameters; a note instead when the system
    name or site domain are not configured."""
    record = ImageRecord(ims_id=pub.image_id, name=req.name, created=None,
                         arch=Arch(req.arch), manifest=parse_url(pub.manifest_url),
                         manifest_etag=pub.manifest_etag)
    manifest = pub.manifest
    rootfs = manifest.first(ArtifactType.ROOTFS)
    system, domain = cfg.node.system_name, cfg.node.site_domain
    if not (system and domain) or rootfs is None or not rootfs.etag:
        path = rootfs.url if rootfs else "<rootfs>"
        etag = rootfs.etag if rootfs else "<etag>"
        root = (f"root={bootparams.PROVIDER}:{path}:{etag}:{bootparams.TRANSPORT}:"
                f"{bootparams.SCHEMA}:{cfg.target.iqn_prefix}:_sbps-hsn._tcp.<system>."
                f"<site-domain>:{bootparams.DEFAULT_TIMEOUT}")
        note = ("node.system_name and node.site_domain are not configured: fill in "
                "<system> and <site-domain>, or run: sbpsctl bootparams "
                f"{pub.image_id} --system SYSTEM --domain DOMAIN")
        return {"root": root, "note": note}, f"{root}\nnote: {note}\n"
    try:
        params = bootformats.for_image(record, manifest,
                                       srv_name=bootparams.srv_name("hsn", system, domain),
                                       iqn_prefix=cfg.target.iqn_prefix)
    except InputError as exc:
        return {"note": str(exc)}, f"note: {exc}\n"
    text = bootformats.cmdline(params, req.boot_parameters or "")
    return bootformats.fields(params), text + "\n"


def manifest_of(result: UploadResult) -> Manifest:
    return Manifest("1.0", None, tuple(Artifact(a.url, a.etag, a.md5, a.type)
                                       for a in result.artifacts))
