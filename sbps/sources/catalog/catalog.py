"""The Catalog: one pass over IMS, manifests and PE/ gives a CatalogSnapshot.

Owns the pass: list IMS records, apply the label rule, list ``PE/`` once (never the
whole bucket), resolve each projected image through the trackers that cache manifests
and HEADs, and assemble the snapshot whose contract ``snapshot.CatalogSnapshot``
documents (transient failures keep last known good versions; only a positively
unlabelled, deleted or replaced image leaves). A steady pass makes no S3 request but the
listing of ``PE/``. Must not stage, export, assign LUN ids or decide removals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from sbps.config import Config
from sbps.config.choices import PeImages, Rules
from sbps.core.decode import DecodeError
from sbps.core.errors import InputError, SbpsError
from sbps.core.model import ImageRecord, ObjectInfo, Problem
from sbps.sources.catalog.ims import ImsClient
from sbps.sources.catalog.parse import parse_record, record_id, record_metadata
from sbps.sources.catalog.pe import PeTracker
from sbps.sources.catalog.rootfs import ImageOutcome, RootfsTracker, S3Runner
from sbps.sources.catalog.rules import PE_PREFIX, decide, is_pe_object, registered_pe
from sbps.sources.catalog.snapshot import CatalogSnapshot, ProblemLog, image_key
from sbps.sources.s3 import S3, allowed_buckets, check_key, confine

log = logging.getLogger(__name__)


@dataclass
class _Listing:
    """What the last successful IMS listing said."""

    records: dict[str, ImageRecord] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # labelled (or unknown) but unreadable
    unlabelled: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    anonymous: bool = False  # a record whose id could not be read: any image may be it


class Catalog:
    """Builds the desired images, pass after pass, keeping caches between passes.

    ``scan()`` runs one pass and returns its snapshot; ``last`` is the latest one. Not safe
    for concurrent ``scan()`` calls (the reconciler runs one pass at a time).
    """

    def __init__(self, config: Config, ims: ImsClient, s3: S3, *,
                 executor: Executor | None = None, concurrency: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = config.catalog
        self.bucket = config.s3.bucket
        self.ims = ims
        self._run = S3Runner(s3, executor, concurrency)
        self.allowed = allowed_buckets(config.s3)
        self._rootfs = RootfsTracker(self._run, self.allowed, config.target.tenant_label,
                                     last_rootfs=self.cfg.rules is Rules.FIELD)
        self._pe = PeTracker(self._run, config.target.pe_identity)
        self._clock = clock
        self._listing: _Listing | None = None
        self._pe_objects: dict[str, ObjectInfo] | None = None
        self._last_refresh: float | None = None
        self._problems = ProblemLog(log)
        self.last = CatalogSnapshot()

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self._problems.problems

    async def scan(self) -> CatalogSnapshot:
        now = self._clock()
        slow = self._last_refresh is not None and now - self._last_refresh >= self.cfg.refresh
        if self._last_refresh is None or slow:
            self._last_refresh = now
        degraded: list[str] = []
        ims_ok = await self._list_ims()
        if not ims_ok:
            degraded.append("ims")
        listing = self._listing or _Listing()
        pe_ok = await self._list_pe()
        if not pe_ok:
            degraded.append(f"s3:{PE_PREFIX}")
        registered = self._registrations(listing)
        outcomes = await self._resolve_rootfs(listing, ims_ok, registered, slow)
        outcomes.update(await self._resolve_pe(registered, pe_ok, slow))
        problems, warnings = list(listing.problems), list(listing.warnings)
        images, stale = [], set()
        for _key, outcome in sorted(outcomes.items()):
            if outcome.degraded:
                degraded.append(outcome.degraded)
            if outcome.problem is not None:
                problems.append(outcome.problem)
            warnings.extend(outcome.warnings)
            if outcome.image is not None:
                images.append(outcome.image)
                if outcome.stale:
                    stale.add(image_key(outcome.image))
        self._problems.update(problems, warnings)
        keys = {image_key(i) for i in images}
        absent = frozenset(set(self.last.by_key()) - keys)
        for key in sorted(absent):
            log.info("image no longer in the catalog", extra={"image": key})
        self.last = CatalogSnapshot(
            images=tuple(sorted(images, key=image_key)), problems=self._problems.problems,
            warnings=self._problems.warnings, degraded=tuple(dict.fromkeys(degraded)),
            stale=frozenset(stale), unlabelled=frozenset(listing.unlabelled),
            absent=absent, ims_ok=ims_ok, pe_ok=pe_ok, refreshed=slow, scanned_at=now)
        return self.last

    async def _list_ims(self) -> bool:
        try:
            raw = await self.ims.list_images()
        except SbpsError as exc:
            log.warning("IMS unavailable; keeping the last known good images: %s", exc,
                        extra={"code": exc.code})
            return False
        self._listing = self._read_records(raw)
        return True

    def _read_records(self, raw: list[Any]) -> _Listing:
        out = _Listing()
        seen: set[str] = set()
        for index, item in enumerate(raw):
            if isinstance(item, DecodeError):  # too deep or not JSON: no id to name it by
                out.problems.append(Problem(f"record[{index}]", "record", item.reason,
                                            item.code))
                out.anonymous = True
                continue
            ims_id = record_id(item, index)
            if isinstance(ims_id, Problem):
                out.problems.append(ims_id)
                out.anonymous = True
                continue
            if ims_id in seen:
                out.problems.append(Problem(ims_id, "id", "listed twice; the first record is "
                                            "used", "duplicate_id"))
                continue
            seen.add(ims_id)
            metadata = record_metadata(item, ims_id, [])
            if isinstance(metadata, Problem):
                out.problems.append(metadata)
                out.broken.add(ims_id)
                continue
            if not decide(metadata, self.cfg, raw=item.get("metadata")).projected:
                out.unlabelled.add(ims_id)
                continue
            record = parse_record(item, index, out.warnings)
            if isinstance(record, Problem):
                out.problems.append(record)
                out.broken.add(ims_id)
            else:
                out.records[ims_id] = record
        return out

    async def _list_pe(self) -> bool:
        if self.cfg.pe is PeImages.OFF:
            self._pe_objects = {}
            return True
        try:
            objects = await self._run(lambda: list(self._run.s3.list(self.bucket, PE_PREFIX)))
        except SbpsError as exc:
            log.warning("PE/ listing failed; keeping the last known PE images: %s", exc,
                        extra={"code": exc.code})
            return False
        self._pe_objects = {o.url.key: o for o in objects
                            if is_pe_object(o.url, self.bucket, self.cfg.rules)}
        return True

    def _registrations(self, listing: _Listing) -> dict[str, str]:
        if self.cfg.pe is not PeImages.LABELLED:
            return {}
        return registered_pe(listing.records.values(), self.bucket, self.cfg)

    def _is_registration(self, record: ImageRecord, registered: dict[str, str]) -> bool:
        if record.manifest is not None:
            return is_pe_object(record.manifest, self.bucket, self.cfg.rules)
        # A linkless record registers a PE object by name only if that object exists.
        listed = self._pe_objects or {}
        return any(owner == record.ims_id and key in listed
                   for key, owner in registered.items())

    async def _resolve_rootfs(self, listing: _Listing, ims_ok: bool,
                              registered: dict[str, str], slow: bool) -> dict[str, ImageOutcome]:
        tracker = self._rootfs
        if ims_ok:
            wanted = {i: r for i, r in listing.records.items()
                      if not self._is_registration(r, registered)}
            # An image is forgotten only when the listing positively lacks it: with a record
            # that could not be read at all, every image not listed may be that record.
            doubt = set(tracker.entries) - listing.unlabelled if listing.anonymous \
                else listing.broken
            for ims_id in set(tracker.entries) - set(wanted) - doubt:
                tracker.forget(ims_id)
            held = [i for i in doubt if i in tracker.entries and i not in wanted]
        else:
            wanted, held = {}, list(tracker.entries)
        ids = list(wanted) + held
        results = await asyncio.gather(
            *(tracker.resolve(wanted[i], slow) for i in wanted),
            *(tracker.hold(i, slow) for i in held))
        return {f"rootfs:{i}": o for i, o in zip(ids, results, strict=True)}

    async def _resolve_pe(self, registered: dict[str, str], pe_ok: bool,
                          slow: bool) -> dict[str, ImageOutcome]:
        tracker = self._pe
        if not pe_ok or self._pe_objects is None:
            return {f"pe:{k}": tracker.hold(k) for k in tracker.entries}
        objects: dict[str, ObjectInfo] = {}
        unsafe: dict[str, ImageOutcome] = {}
        for key, obj in self._pe_objects.items():
            try:
                check_key(key)
                confine(obj.url, self.allowed, str(obj.url), "object")
            except ValueError as exc:
                unsafe[f"pe:{key}"] = ImageOutcome(problem=Problem(str(obj.url), "key", str(exc),
                                                              "unsafe_key"))
                continue
            except InputError as exc:
                unsafe[f"pe:{key}"] = ImageOutcome(problem=Problem(exc.obj, exc.field, exc.reason,
                                                              exc.code))
                continue
            if self.cfg.pe is PeImages.ALL or key in registered:
                objects[key] = obj
        for key in set(tracker.entries) - set(objects):
            tracker.forget(key)
        keys = list(objects)
        results = await asyncio.gather(
            *(tracker.resolve(objects[k], slow, registered) for k in keys))
        out = {f"pe:{k}": o for k, o in zip(keys, results, strict=True)}
        out.update(unsafe)
        return out
