"""IMS rootfs images: manifest and HEAD caching, last known good versions.

Owns the per-image state of IMS rootfs images. A manifest is fetched only when the
record's (link path, link etag) changes, after a transient failure, or on the slow refresh
when the record has no link etag or a problem; the rootfs object is HEADed only when the
manifest names another rootfs, after a transient failure, and on the slow refresh (which
also checks that the last known good object still exists unchanged). The manifest's
boot-parameters artifact is read with the manifest (the only copy ``GET /v1/bootparams``
serves). Every link is confined to the allowed buckets before it is followed (problem
``foreign_bucket``). Must not decide labels, and must not drop an image on a transient
failure.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sbps.core import identity
from sbps.core.errors import InputError, SbpsError
from sbps.core.model import (
    ArtifactType,
    DesiredImage,
    ImageKind,
    ImageRecord,
    Manifest,
    ObjectInfo,
    Problem,
)
from sbps.sources.catalog.parse import parse_manifest
from sbps.sources.catalog.rules import foreign_links
from sbps.sources.s3 import S3, NotFound, confine, parse_url

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The largest manifest read; real ones are a few hundred bytes.
MAX_MANIFEST = 1 * 2**20
#: The largest boot-parameters artifact read (a kernel command line is a few KiB at most).
MAX_BOOT_PARAMETERS = 64 * 2**10


class S3Runner:
    """Runs the blocking S3 client in an executor, at most ``limit`` calls at once."""

    def __init__(self, s3: S3, executor: Executor | None = None, limit: int = 8) -> None:
        self.s3 = s3
        self._executor = executor
        self._limit = limit
        self._sem: asyncio.Semaphore | None = None

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self._limit)
        async with self._sem:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor,
                                              functools.partial(fn, *args, **kwargs))


@dataclass(frozen=True)
class ImageOutcome:
    """One image's answer for one pass."""

    image: DesiredImage | None = None
    stale: bool = False
    problem: Problem | None = None
    degraded: str | None = None
    warnings: tuple[Problem, ...] = ()


@dataclass
class _Entry:
    record: ImageRecord
    manifest_key: tuple[str, str | None] | None = None
    manifest_problem: Problem | None = None
    retry_manifest: bool = False
    rootfs_key: tuple[str, str] | None = None
    head: ObjectInfo | None = None
    head_problem: Problem | None = None
    retry_head: bool = False
    md5: str | None = None
    boot: tuple[str | None, str] = (None, "")  # (text, problem code)
    warnings: tuple[Problem, ...] = ()
    good: DesiredImage | None = None


def _same(a: str, b: str) -> bool:
    return a.strip('"').lower() == b.strip('"').lower()


class RootfsTracker:
    def __init__(self, run: S3Runner, allowed: Collection[str],
                 tenant_label: str = "sbps-tenant", *, last_rootfs: bool = False) -> None:
        self.run = run
        self.last_rootfs = last_rootfs
        """The field agent's choice of rootfs artifact (``parse_manifest``)."""
        self.allowed = frozenset(allowed)
        """Buckets links may point into (``sbps.sources.s3.allowed_buckets``)."""
        self.tenant_label = tenant_label
        self.entries: dict[str, _Entry] = {}

    def forget(self, ims_id: str) -> None:
        self.entries.pop(ims_id, None)

    async def hold(self, ims_id: str, slow: bool) -> ImageOutcome:
        """Keep an image at its last known good version (its record is unreadable now)."""
        entry = self.entries.get(ims_id)
        if entry is None:
            return ImageOutcome()
        degraded = await self._verify_good(entry) if slow else None
        return ImageOutcome(image=entry.good, stale=entry.good is not None, degraded=degraded)

    async def resolve(self, record: ImageRecord, slow: bool) -> ImageOutcome:
        entry = self.entries.get(record.ims_id)
        if entry is None:
            entry = self.entries[record.ims_id] = _Entry(record)
        entry.record = record
        degraded = await self._verify_good(entry) if slow else None
        if record.manifest is None:
            problem = Problem(record.ims_id, "link", "missing or null: no manifest", "no_link")
            return self._answer(entry, None, problem, degraded)
        foreign = self._foreign(record)
        if foreign is not None:  # never fetched: its content is not ours to read
            return self._answer(entry, None, foreign, degraded)
        key = (str(record.manifest), record.manifest_etag)
        if (entry.manifest_key != key or entry.retry_manifest
                or (slow and (record.manifest_etag is None or entry.manifest_problem))):
            failed = await self._fetch_manifest(entry, key)
            if failed is not None:  # the record changed but its manifest is unreadable
                return self._answer(entry, None, None, degraded or failed)
        if entry.manifest_problem is not None:
            return self._answer(entry, None, entry.manifest_problem, degraded)
        if entry.rootfs_key is None:
            return self._answer(entry, None, None, degraded)
        if (entry.head is None and entry.head_problem is None) or entry.retry_head or (
                slow and entry.head_problem is not None):
            failed = await self._head(entry)
            degraded = degraded or failed
        if entry.head_problem is not None or entry.head is None:
            return self._answer(entry, None, entry.head_problem, degraded)
        url, etag = entry.rootfs_key
        fresh = DesiredImage(
            identity=identity.rootfs(url, etag), kind=ImageKind.ROOTFS, source=entry.head,
            name=record.name, ims_id=record.ims_id, arch=record.arch, md5=entry.md5,
            manifest=record.manifest, manifest_etag=record.manifest_etag,
            tenant=record.metadata.get(self.tenant_label, "").strip() or None,
            boot_parameters=entry.boot[0], boot_parameters_error=entry.boot[1])
        return self._answer(entry, fresh, None, degraded)

    def _foreign(self, record: ImageRecord) -> Problem | None:
        assert record.manifest is not None
        try:
            confine(record.manifest, self.allowed, record.ims_id, "link.path")
        except InputError as exc:
            return Problem(exc.obj, exc.field, exc.reason, exc.code)
        return None

    def _answer(self, entry: _Entry, fresh: DesiredImage | None, problem: Problem | None,
                degraded: str | None) -> ImageOutcome:
        if fresh is not None:
            entry.good = fresh
            return ImageOutcome(image=fresh, degraded=degraded, warnings=entry.warnings)
        return ImageOutcome(image=entry.good, stale=entry.good is not None, problem=problem,
                       degraded=degraded, warnings=entry.warnings)

    async def _fetch_manifest(self, entry: _Entry, key: tuple[str, str | None]) -> str | None:
        record = entry.record
        assert record.manifest is not None
        try:
            body, _ = await self.run(self.run.s3.get_bytes, record.manifest,
                                     max_bytes=MAX_MANIFEST)
        except SbpsError as exc:
            if exc.temporary:
                entry.retry_manifest = True
                log.warning("manifest unreadable, keeping the last known good version: %s",
                            exc, extra={"image": record.ims_id})
                return f"manifest:{record.ims_id}"
            entry.manifest_key, entry.retry_manifest = key, False
            entry.manifest_problem = Problem(record.ims_id, "link.path", str(exc)[:300],
                                             exc.code)
            return None
        warnings: list[Problem] = []
        manifest = parse_manifest(record.ims_id, body, warnings,
                                  last_rootfs=self.last_rootfs)
        if isinstance(manifest, Problem):
            entry.manifest_key, entry.retry_manifest = key, False
            entry.warnings = tuple(warnings)
            entry.manifest_problem = manifest
            return None
        foreign = foreign_links(record.ims_id, manifest, self.allowed)
        if foreign is None:
            boot = await self._boot_parameters(record.ims_id, manifest, warnings)
            if boot is None:  # transient: the manifest is read again next pass
                entry.retry_manifest = True
                return f"manifest:{record.ims_id}"
            entry.boot = boot
        entry.manifest_key, entry.retry_manifest = key, False
        entry.warnings = tuple(warnings)
        entry.manifest_problem = foreign
        if foreign is not None:
            return None
        art = manifest.first(ArtifactType.ROOTFS)
        assert art is not None and art.etag is not None  # parse_manifest guarantees both
        entry.md5 = art.md5
        rootfs_key = (str(art.url), art.etag)
        if rootfs_key != entry.rootfs_key:
            entry.rootfs_key = rootfs_key
            entry.head, entry.head_problem, entry.retry_head = None, None, False
        return None

    async def _boot_parameters(self, ims_id: str, manifest: Manifest,
                               warnings: list[Problem]) -> tuple[str | None, str] | None:
        """(text, "") or (None, problem code) of the boot-parameters artifact; (None, "")
        when there is none; None after a transient failure. Its links are confined."""
        art = manifest.first(ArtifactType.BOOT_PARAMETERS)
        if art is None:
            return None, ""
        field = "manifest.artifacts[boot_parameters]"
        try:
            body, _ = await self.run(self.run.s3.get_bytes, art.url,
                                     max_bytes=MAX_BOOT_PARAMETERS)
            text = body.decode("utf-8").strip()
        except UnicodeDecodeError:
            code, reason = "boot_parameters_unreadable", "not UTF-8 text"
        except SbpsError as exc:
            if exc.temporary:
                log.warning("boot parameters unreadable, retrying: %s", exc,
                            extra={"image": ims_id})
                return None
            code, reason = "boot_parameters_unreadable", f"{exc.code}: {str(exc)[:200]}"
        else:
            return text, ""
        warnings.append(Problem(ims_id, field, reason, code))
        return None, code

    async def _head(self, entry: _Entry) -> str | None:
        ims_id = entry.record.ims_id
        assert entry.rootfs_key is not None
        url_text, etag = entry.rootfs_key
        url = parse_url(url_text)
        entry.head, entry.head_problem, entry.retry_head = None, None, False
        try:
            info = await self.run(self.run.s3.head, url, part_number=1)
        except NotFound:
            entry.head_problem = Problem(ims_id, "rootfs", f"{url} does not exist",
                                         "rootfs_missing")
            return None
        except SbpsError as exc:
            if exc.temporary:
                entry.retry_head = True
                return f"object:{ims_id}"
            entry.head_problem = Problem(ims_id, "rootfs", str(exc)[:300], exc.code)
            return None
        if not _same(info.etag, etag):
            entry.head_problem = Problem(
                ims_id, "rootfs", f"{url}: the manifest says etag {etag}, S3 has {info.etag} "
                "(replaced, or still being uploaded)", "etag_mismatch")
        elif info.size <= 0:
            entry.head_problem = Problem(ims_id, "rootfs", f"{url} is empty", "empty_object")
        else:
            entry.head = replace(info, etag=etag)
        return None

    async def _verify_good(self, entry: _Entry) -> str | None:
        """Slow refresh: is the last known good object still there, unchanged?"""
        good = entry.good
        if good is None:
            return None
        try:
            info = await self.run(self.run.s3.head, good.source.url)
        except NotFound:
            info = None
        except SbpsError:
            # Only "not found" or another etag is proof; a refusal may be a credential
            # problem and says nothing about the object.
            return f"object:{entry.record.ims_id}"
        if info is not None and _same(info.etag, good.source.etag) and \
                info.size == good.source.size:
            return None
        log.warning("rootfs object deleted or replaced: %s", good.source.url,
                    extra={"image": entry.record.ims_id})
        entry.good = None
        if entry.rootfs_key == (str(good.source.url), good.source.etag):
            entry.head, entry.head_problem, entry.retry_head = None, None, True
        return None
