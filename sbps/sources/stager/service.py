"""The stager: verified copies of S3 objects in the local cache, for the reconciler.

Owns the public API (stage, entry, check_all, rehash_all, evict, usage, status), the policy
(strict or best-effort verification), download slots, the cache budget and quarantine.
The download mechanics live in ``download``, the on-disk formats in ``records``, the
directory and eviction rules in ``cache`` and the checks in ``check``. Must not touch the
target, decide what is desired, or name a file after anything but a digest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from sbps.config import StageConfig
from sbps.config.choices import Verify
from sbps.core.errors import (
    InputError,
    PermanentError,
    SbpsError,
    TemporaryError,
    VerificationError,
)
from sbps.core.identity import digest as key_digest
from sbps.core.model import CacheEntry, DesiredImage, Problem
from sbps.sources.s3 import S3
from sbps.sources.stager import budget, cache
from sbps.sources.stager.check import check_dir, rehash
from sbps.sources.stager.download import Download, DownloadOutcome, fetch_all, thread_done
from sbps.sources.stager.errors import CacheFull, NoSpace, StageConflict
from sbps.sources.stager.hashing import VerifyPlan, etag_parts, make_plan
from sbps.sources.stager.layout import Layout, check_digest
from sbps.sources.stager.records import Record, read_record
from sbps.sources.stager.status import InFlight, StageStatus, StagingCounters
from sbps.sources.stager.throttle import TokenBucket
from sbps.sources.stager.verify import compare

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_REHASH_RATE = 128 * 2**20


class Stager:
    """Stages images into ``cfg.cache_dir``. Build once in the composition root; call
    ``check_all`` at start, then ``stage`` from the reconciler and ``rehash_all`` as a
    background task. All methods run on the event loop; file I/O beyond a stat or a small
    record goes to ``executor`` (one of its own when not given)."""

    def __init__(self, cfg: StageConfig, s3: S3, *, executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.s3 = s3
        self.layout = Layout.at(cfg.cache_dir)
        self.strict = cfg.verify is Verify.STRICT
        self._clock = clock
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=cfg.concurrency * cfg.part_concurrency + 2,
            thread_name_prefix="sbps-stage")
        self._bucket = TokenBucket(cfg.bandwidth)
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._locks: dict[str, asyncio.Lock] = {}
        self._records: dict[str, Record] = {}
        self._in_flight: dict[str, int] = {}
        self._last_used: dict[str, float] = {}
        self._counters = StagingCounters()

    # -- queries ------------------------------------------------------------------------

    def entry(self, digest: str) -> CacheEntry | None:
        """The verified cache file of ``digest``, if it is present and unchanged (one stat)."""
        record = self._records.get(check_digest(digest))
        if record is None:
            return None
        path = self.layout.final(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._records.pop(digest, None)
            return None
        if not record.matches(st):
            return None
        return CacheEntry(digest, path, record.size, record.etag, record.verified_at)

    def digest_of(self, path: str) -> str | None:
        """The digest of the cache file that backs a backstore at ``path``, or None."""
        return self.layout.digest_of(path)

    def usage(self) -> tuple[int, int]:
        """(bytes used, budget now); budget 0 means no limit."""
        files = cache.scan(self.layout)
        return (cache.used_bytes(files, self._in_flight),
                budget.now(self.cfg, self.layout.root, files).limit)

    def status(self) -> StageStatus:
        used, limit = self.usage()
        return self._counters.snapshot(used, limit, len(self._records))

    def touch(self, digest: str) -> None:
        """Mark a cache file as used now (least-recently-used eviction)."""
        self._last_used[check_digest(digest)] = self._clock()

    # -- staging ------------------------------------------------------------------------

    async def stage(self, image: DesiredImage, *, in_use: Collection[str] = ()) -> CacheEntry:
        """A verified cache file of ``image``: the existing one, or a new download.

        ``in_use`` lists the digests of exported and retiring LUNs: they are never evicted
        to make room. Raises VerificationError (etag_mismatch, size_mismatch, md5_mismatch,
        unverifiable), CacheFull, NoSpace, StageConflict, or S3 errors (temporary ones after
        bounded retries). A cancelled or temporarily failed download resumes next time.
        """
        digest = check_digest(image.identity.digest)
        if key_digest(image.identity.key) != digest:
            raise InputError(image.name, "identity.digest", "is not the SHA-224 of its key")
        etag = image.source.etag.strip('"')
        async with self._locks.setdefault(digest, asyncio.Lock()):
            current = self.entry(digest) or self._load(digest)
            if current is not None and (current.etag, current.size) == (etag,
                                                                         image.source.size):
                self.touch(digest)
                return current
            if current is not None and digest in in_use:
                raise StageConflict(
                    f"image {image.name} ({digest}): {image.source.url} is now ETag {etag}, "
                    f"but the cache file of ETag {current.etag} is still exported")
            async with self._slots:
                started = self._clock()
                try:
                    entry = await self._download(digest, etag, image, set(in_use))
                except SbpsError as exc:
                    self._counters.failures[exc.code] += 1
                    log.warning("staging failed: %s", exc, extra={
                        "digest": digest, "image": image.name, "action": "stage",
                        "code": exc.code})
                    raise
            self._counters.durations.append((digest, self._clock() - started))
            self._counters.downloads_ok += 1
            self.touch(digest)
            return entry

    def _load(self, digest: str) -> CacheEntry | None:
        """A file verified before this process started and not yet checked by check_all."""
        record = read_record(self.layout.record(digest))
        if record is None or record.digest != digest:
            return None
        self._records[digest] = record
        return self.entry(digest)

    async def _download(self, digest: str, etag: str, image: DesiredImage,
                        in_use: set[str]) -> CacheEntry:
        url = image.source.url
        info = await self._run(self.s3.head, url, 1 if etag_parts(etag) else None)
        if info.etag != etag:
            raise VerificationError(f"{url}: S3 has ETag {info.etag}, image {image.name} "
                                    f"expects {etag} (the object was replaced)",
                                    code="etag_mismatch")
        if info.size != image.source.size:
            raise VerificationError(f"{url}: S3 size {info.size}, image {image.name} "
                                    f"expects {image.source.size}", code="size_mismatch")
        plan = make_plan(etag, info.size, info.parts, info.part_size, image.md5)
        if plan.unverifiable and not image.md5 and self.strict:
            raise VerificationError(f"{url}: cannot be verified: {plan.unverifiable} "
                                    "(stage.verify = strict)", code="unverifiable")
        self._reserve(digest, plan.size, in_use, image.name)
        dl = Download(self.layout, digest, url, plan, chunk_size=self.cfg.part_size,
                      s3=self.s3, bucket=self._bucket,
                      on_bytes=lambda n: self._counters.add_bytes(digest, n))
        try:
            pending = await self._step(dl.prepare)
            await fetch_all(dl, pending, self._executor, self.cfg.part_concurrency,
                            on_retry=self._retried)
            outcome = await self._step(dl.finish)
            checks = self._verify(plan, outcome, image)
            now = self._clock()
            record = await self._step(dl.publish, lambda st: Record(
                digest, str(url), etag, st.st_size, st.st_ino, st.st_mtime_ns, now,
                outcome.md5, plan.parts, plan.part_size, "etag" in checks or "md5" in checks,
                tuple(checks)))
        except (PermanentError, NoSpace):
            dl.discard()
            raise
        except OSError as exc:
            dl.close()
            raise TemporaryError(f"stage {image.name} ({digest}): cache I/O: {exc}",
                                 code="cache_io") from exc
        except BaseException:
            dl.close()
            raise
        finally:
            self._in_flight.pop(digest, None)
            with self._counters.lock:
                self._counters.progress.pop(digest, None)
        self._records[digest] = record
        log.info("staged and verified", extra={
            "digest": digest, "image": image.name, "action": "stage", "bytes": record.size,
            "fetched": outcome.fetched, "reread": outcome.reread, "checks": ",".join(checks)})
        entry = self.entry(digest)
        if entry is None:
            raise TemporaryError(f"stage {image.name} ({digest}): cache file vanished",
                                 code="cache_io")
        return entry

    def _verify(self, plan: VerifyPlan, outcome: DownloadOutcome, image: DesiredImage) -> list[str]:
        checks = compare(plan, outcome, image)
        if len(checks) == 1:
            if self.strict:
                raise VerificationError(f"{image.source.url} (image {image.name}): cannot be "
                                        f"verified: {plan.unverifiable}", code="unverifiable")
            self._counters.best_effort += 1
            log.warning("staged without verification (stage.verify = best-effort): %s",
                        plan.unverifiable, extra={"digest": image.identity.digest,
                                                  "image": image.name, "action": "stage"})
        return checks

    def _retried(self) -> None:
        self._counters.retries += 1

    # -- space ---------------------------------------------------------------------------

    def _reserve(self, digest: str, size: int, in_use: set[str], name: str) -> None:
        """Hold room for a download, evicting unused files if the budget requires."""
        files = cache.scan(self.layout)
        have = sum(f.size for f in files if f.kind == "partial" and f.digest == digest)
        try:
            self._evict(files, in_use | {digest}, max(0, size - have),
                        f"image {name} ({digest}, {size} bytes)")
        except CacheFull as exc:
            if not self._counters.cache_full:
                # One line when the budget starts to bind; each image's failure says more.
                log.error("cache budget reached, images wait: %s", exc, extra={
                    "digest": digest, "image": name, "action": "stage", "code": exc.code})
            self._counters.cache_full = True
            raise
        if self._counters.cache_full:
            log.info("cache budget has room again", extra={"digest": digest, "image": name,
                                                           "action": "stage"})
        self._counters.cache_full = False
        self._in_flight[digest] = size
        with self._counters.lock:
            self._counters.progress[digest] = InFlight(digest, size, 0, self._clock())

    def evict(self, in_use: Collection[str], need: int) -> list[str]:
        """Make ``need`` bytes free within the budget by deleting the least recently used
        files that back no LUN in ``in_use``; returns the evicted digests. Raises
        CacheFull (evicting nothing) when that cannot be done."""
        return self._evict(cache.scan(self.layout), set(in_use), need, f"{need} bytes")

    def _evict(self, files: list[cache.CacheFile], in_use: set[str], need: int,
               what: str) -> list[str]:
        now = self._clock()
        for digest in in_use:
            self._last_used[digest] = now
        limit = budget.now(self.cfg, self.layout.root, files)
        if not limit.limit:
            return []
        victims = cache.choose_victims(files, budget=limit.limit, need=need,
                                       keep=in_use, in_flight=self._in_flight,
                                       last_used=self._last_used, what=what,
                                       hint=limit.hint(self.cfg, self.layout.root))
        cache.remove(self.layout, victims)
        gone = sorted({v.digest for v in victims if v.kind == "final"})
        for digest in gone:
            self._records.pop(digest, None)
            self._last_used.pop(digest, None)
        self._counters.evicted_files += len(gone)
        self._counters.evicted_bytes += sum(v.size for v in victims)
        return gone

    # -- checks --------------------------------------------------------------------------

    async def check_all(self) -> list[Problem]:
        """Start-up check: each cache file against its record (one stat each). Files that
        fail are moved to quarantine and returned as problems (their images must be marked
        failed and their LUNs withdrawn; the next ``stage`` fetches them again)."""
        result = await self._run(check_dir, self.layout)
        for digest, record in result.records.items():
            self._records.setdefault(digest, record)
            self._last_used.setdefault(digest, record.verified_at)
        return [await self._run(self._quarantine, f.digest, f.code, f.reason)
                for f in result.bad]

    async def rehash_all(self, *, rate: int | None = None,
                         on_problem: Callable[[Problem], Any] | None = None) -> list[Problem]:
        """Re-hash every verified cache file at most ``rate`` bytes/s (default 128 MiB/s,
        0: unlimited). Cancellable; a bad file is quarantined, passed to ``on_problem`` at
        once and returned."""
        bucket = TokenBucket(DEFAULT_REHASH_RATE if rate is None else rate)
        problems: list[Problem] = []
        self._counters.rehash_running = True
        try:
            for digest in sorted(self._records):
                async with self._locks.setdefault(digest, asyncio.Lock()):
                    record = self._records.get(digest)
                    if record is None:
                        continue
                    stop = threading.Event()
                    job = self._executor.submit(rehash, self.layout.final(digest), record,
                                                bucket, stop)
                    try:
                        finding = await asyncio.wrap_future(job)
                    except asyncio.CancelledError:
                        stop.set()
                        await thread_done(job, asyncio.get_running_loop())
                        raise
                    except FileNotFoundError:
                        continue
                    self._counters.rehashed_bytes += record.size
                    if finding is not None:
                        problem = await self._run(self._quarantine, digest, finding.code,
                                                  finding.reason)
                        problems.append(problem)
                        if on_problem is not None:
                            on_problem(problem)
        finally:
            self._counters.rehash_running = False
        return problems

    def _quarantine(self, digest: str, code: str, reason: str) -> Problem:
        where = cache.quarantine(self.layout, digest, self._clock())
        self._records.pop(digest, None)
        self._counters.quarantined += 1
        log.error("cache file failed its check; moved aside: %s", reason, extra={
            "digest": digest, "action": "quarantine", "code": code, "path": where})
        return Problem(digest, "cache", f"{reason}; moved to {where}", code=code)

    # -- plumbing ------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _step(self, fn: Callable[..., T], *args: Any) -> T:
        """Like ``_run``, but a cancelled caller still waits for the thread to end, so the
        partial file is never closed under a step that is using it."""
        job = self._executor.submit(fn, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            await thread_done(job, asyncio.get_running_loop())
            raise

    async def aclose(self) -> None:
        """Stop the stager's own worker threads (after every stage call has returned)."""
        if self._own_executor:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
