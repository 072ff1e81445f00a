"""PE images: objects under ``PE/`` in the image bucket (which ones: ``rules.is_pe_object``).

Owns the per-object state of PE images. The one paginated listing of ``PE/`` per pass
(made by the catalog) says which objects exist and their etag and size; an object is
HEADed (for its multipart layout) only when it is new or its listed etag or size changed,
after a transient failure, or on the slow refresh when it has a problem. Identity comes
from ``sbps.core.identity.pe`` in the configured mode. Must not list anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from sbps.core import identity
from sbps.core.errors import SbpsError
from sbps.core.identity import PeMode
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, Problem
from sbps.sources.catalog.rootfs import ImageOutcome, S3Runner
from sbps.sources.catalog.rules import pe_name
from sbps.sources.s3 import NotFound

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    listed: tuple[str, int] | None = None
    head: ObjectInfo | None = None
    problem: Problem | None = None
    retry: bool = False
    good: DesiredImage | None = None


class PeTracker:
    def __init__(self, run: S3Runner, mode: PeMode) -> None:
        self.run = run
        self.mode = mode
        self.entries: dict[str, _Entry] = {}

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def hold(self, key: str) -> ImageOutcome:
        entry = self.entries.get(key)
        good = entry.good if entry is not None else None
        return ImageOutcome(image=good, stale=good is not None)

    async def resolve(self, obj: ObjectInfo, slow: bool,
                      registered_by: Mapping[str, str]) -> ImageOutcome:
        key = obj.url.key
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry()
        degraded: str | None = None
        listed = (obj.etag, obj.size)
        if entry.listed != listed or entry.retry or (slow and entry.problem is not None):
            degraded = await self._head(entry, obj)
            if degraded is None:
                entry.listed = listed
        if entry.head is None or degraded is not None:
            return ImageOutcome(image=entry.good, stale=entry.good is not None,
                           problem=entry.problem, degraded=degraded)
        fresh = DesiredImage(
            identity=identity.pe(obj.url, entry.head.etag, self.mode), kind=ImageKind.PE,
            source=entry.head, name=pe_name(obj.url), ims_id=registered_by.get(key))
        entry.good = fresh
        return ImageOutcome(image=fresh, degraded=degraded)

    async def _head(self, entry: _Entry, obj: ObjectInfo) -> str | None:
        entry.retry = False
        try:
            info = await self.run(self.run.s3.head, obj.url, part_number=1)
        except NotFound:
            # Listed a moment ago, gone now: a race with a delete; the next listing decides.
            entry.retry = True
            return f"object:{obj.url}"
        except SbpsError as exc:
            if exc.temporary:
                entry.retry = True
                return f"object:{obj.url}"
            entry.head, entry.problem = None, Problem(str(obj.url), "object", str(exc)[:300],
                                                      exc.code)
            return None
        if info.etag.strip('"').lower() != obj.etag.strip('"').lower():
            entry.retry = True  # replaced between the listing and the HEAD
            return f"object:{obj.url}"
        if info.size <= 0:
            entry.head, entry.problem = None, Problem(str(obj.url), "object", "empty object",
                                                      "empty_object")
            return None
        entry.head, entry.problem = replace(info, etag=obj.etag), None
        return None
