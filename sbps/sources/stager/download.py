"""One object's download into a partial file: ranged GETs, streaming hashes, resume.

Owns the partial file and its progress log: preallocation, positional writes of each
chunk as it streams, in-order hashing through ``Tracker``, durable chunk and part records
for resume, and the final publish (fsync, chmod 0444, record, rename, directory fsync).
Blocking methods run in worker threads; ``fetch_all`` drives them from asyncio with bounded
parallelism and retries. Must not decide policy, eviction or what to stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from sbps.core.errors import TemporaryError, UpstreamTemporaryError, VerificationError
from sbps.core.model import S3Url
from sbps.sources.s3 import S3, PreconditionFailed
from sbps.sources.stager.errors import NoSpace
from sbps.sources.stager.hashing import Segment, Tracker, VerifyPlan
from sbps.sources.stager.layout import Layout, fsync_dir
from sbps.sources.stager.records import ProgressLog, Record, write_record
from sbps.sources.stager.throttle import TokenBucket

log = logging.getLogger(__name__)
ATTEMPTS = 5


class Stopped(Exception):
    """The download was asked to stop (cancelled); its partial file is kept for resume."""


@dataclass(frozen=True)
class DownloadOutcome:
    size: int
    md5: str
    part_digests: tuple[bytes, ...]
    fetched: int
    reread: int


def no_space(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"{what}: no space left on the cache file system")
    return exc


class Download:
    """The partial file of one object version. Not reusable; close or discard it."""

    def __init__(self, layout: Layout, digest: str, url: S3Url, plan: VerifyPlan, *,
                 chunk_size: int, s3: S3, bucket: TokenBucket,
                 on_bytes: Callable[[int], None] = lambda n: None) -> None:
        self.layout, self.digest, self.url, self.plan = layout, digest, url, plan
        self.chunks = plan.chunks(chunk_size)
        self.s3, self.bucket, self.on_bytes = s3, bucket, on_bytes
        self.stop = threading.Event()
        self.partial = layout.partial(digest)
        self.fd = -1
        self.fetched = 0
        self._lock = threading.Lock()
        self._recorded: set[int] = set()
        self._parts_logged: set[int] = set()
        self.segments = [Segment(s, e) for s, e in plan.part_ranges()]
        if plan.whole:
            self.segments.append(Segment(0, plan.size))
        self.log = ProgressLog(layout.progress(digest), {
            "etag": plan.etag, "size": plan.size, "parts": plan.parts,
            "part_size": plan.part_size, "chunks": [list(c) for c in self.chunks]})
        self.tracker = Tracker(-1, self.chunks, self.segments, self._segment_done,
                               disjoint=plan.parts)
        self._part_chunks: list[list[int]] = [[] for _ in range(plan.parts)]
        for i in range(len(self.chunks)):
            for p in self._parts_of(i):
                self._part_chunks[p].append(i)

    # -- blocking steps, run in worker threads -------------------------------------------

    def prepare(self) -> list[int]:
        """Open (or resume) the partial file; return the chunks still to fetch."""
        os.makedirs(self.layout.root, mode=0o755, exist_ok=True)
        progress = self.log.open()
        fresh = not progress.chunks and not progress.parts
        try:
            self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o600)
            if fresh:
                os.ftruncate(self.fd, 0)
            if os.fstat(self.fd).st_size != self.plan.size:
                try:
                    os.posix_fallocate(self.fd, 0, max(self.plan.size, 1))
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                os.ftruncate(self.fd, self.plan.size)
        except OSError as exc:
            raise no_space(exc, f"stage {self.digest}") from exc
        self.tracker.fd = self.fd
        for i in progress.chunks:
            if 0 <= i < len(self.chunks):
                self.tracker.mark_complete(i)
                self._recorded.add(i)
        for p, md5 in progress.parts.items():
            seg = self.segments[p] if 0 <= p < self.plan.parts else None
            if seg is not None and self._part_chunks_recorded(p):
                seg.digest, seg.pos = bytes.fromhex(md5), seg.end
                self._parts_logged.add(p)
        self.tracker.catch_up()
        pending = [i for i in range(len(self.chunks)) if i not in self._recorded]
        if len(pending) < len(self.chunks):
            log.info("resuming download", extra={"digest": self.digest, "action": "stage",
                     "done_chunks": len(self.chunks) - len(pending)})
        return pending

    def fetch(self, index: int) -> None:
        """GET one chunk from where an earlier attempt stopped, writing and hashing it."""
        start, end = self.chunks[index]
        pos = start + self.tracker.written[index]
        if pos < end:
            for piece in self.s3.get_range(self.url, pos, end - 1, if_match=self.plan.etag):
                if self.stop.is_set():
                    raise Stopped()
                if pos + len(piece) > end:
                    raise UpstreamTemporaryError(
                        f"S3 get {self.url}: more bytes than the range {start}-{end - 1}",
                        code="s3_unavailable")
                self.bucket.take(len(piece), self.stop)
                view = memoryview(piece)
                self._write(view, pos)
                self.tracker.wrote(index, pos, view)
                pos += len(piece)
                with self._lock:
                    self.fetched += len(piece)
                self.on_bytes(len(piece))
        if pos != end:
            raise UpstreamTemporaryError(
                f"S3 get {self.url}: body ended at {pos}, expected {end}", code="s3_unavailable")
        # Data before record: a chunk listed in the progress log is on disk for sure.
        os.fdatasync(self.fd)
        self.log.chunk_done(index)
        with self._lock:
            self._recorded.add(index)
        for p in self._parts_of(index):
            self._log_part(p)

    def _write(self, view: memoryview, pos: int) -> None:
        while view:
            try:
                n = os.pwrite(self.fd, view, pos)
            except OSError as exc:
                raise no_space(exc, f"stage {self.digest}") from exc
            view, pos = view[n:], pos + n

    def _parts_of(self, chunk: int) -> list[int]:
        start, end = self.chunks[chunk]
        return [p for p in self.tracker.covering(start, end) if p < self.plan.parts]

    def _part_chunks_recorded(self, part: int) -> bool:
        return all(i in self._recorded for i in self._part_chunks[part])

    def _segment_done(self, index: int, seg: Segment) -> None:
        if index < self.plan.parts:
            self._log_part(index)

    def _log_part(self, part: int) -> None:
        # A part's MD5 is logged only once all its chunks are durable, so a resumed
        # download never trusts an MD5 of bytes that a crash could have lost.
        with self._lock:
            seg = self.segments[part]
            if (part in self._parts_logged or seg.digest is None
                    or not self._part_chunks_recorded(part)):
                return
            self._parts_logged.add(part)
            digest = seg.digest
        self.log.part_done(part, digest.hex())

    def finish(self) -> DownloadOutcome:
        """Flush the partial file and return what was computed."""
        if not self.tracker.complete:
            raise TemporaryError(f"stage {self.digest}: download incomplete")
        os.fsync(self.fd)
        size = os.fstat(self.fd).st_size
        whole = self.segments[-1].digest if self.plan.whole else None
        parts = tuple(s.digest or b"" for s in self.segments[:self.plan.parts])
        return DownloadOutcome(size, whole.hex() if whole else "", parts, self.fetched,
                       self.tracker.reread)

    def publish(self, make_record: Callable[[os.stat_result], Record]) -> Record:
        """Read-only, recorded, renamed into place, durable. Returns the record."""
        os.fchmod(self.fd, 0o444)
        st = os.fstat(self.fd)
        record = make_record(st)
        final = self.layout.final(self.digest)
        try:
            write_record(self.layout.record(self.digest), record)
            os.replace(self.partial, final)
            fsync_dir(self.layout.root)
        except OSError as exc:
            raise no_space(exc, f"stage {self.digest}") from exc
        self.close()
        _unlink(self.layout.progress(self.digest))
        return record

    def close(self) -> None:
        self.log.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Remove the partial file and its progress log (wrong or changed content)."""
        self.close()
        _unlink(self.partial)
        _unlink(self.layout.progress(self.digest))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def backoff(attempt: int) -> float:
    return min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)


async def fetch_all(dl: Download, pending: list[int], executor: Executor, concurrency: int,
                    on_retry: Callable[[], None] = lambda: None) -> None:
    """Fetch the pending chunks, ``concurrency`` at a time, retrying temporary errors with
    backoff. On any failure or cancellation, stop every chunk and wait for its thread."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    threads: list[asyncio.Future[None]] = []

    async def one(index: int) -> None:
        async with sem:
            for attempt in range(ATTEMPTS):
                job = executor.submit(dl.fetch, index)
                threads.append(thread_done(job, loop))
                try:
                    await asyncio.wrap_future(job)
                    return
                except PreconditionFailed as exc:
                    raise VerificationError(
                        f"{dl.url}: object changed during download (If-Match "
                        f"{dl.plan.etag} failed)", code="etag_mismatch") from exc
                except UpstreamTemporaryError as exc:
                    if attempt == ATTEMPTS - 1:
                        raise
                    on_retry()
                    log.warning("retrying chunk", extra={
                        "digest": dl.digest, "action": "stage", "chunk": index,
                        "error": str(exc)})
                    await asyncio.sleep(backoff(attempt))

    tasks = [asyncio.ensure_future(one(i)) for i in pending]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        dl.stop.set()
        for t in tasks:
            t.cancel()
        # Threads cannot be cancelled: wait until each has seen ``stop`` before the
        # caller closes the file they write to.
        await asyncio.gather(*tasks, *threads, return_exceptions=True)
        raise


def thread_done(job: Future[Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """An asyncio future set when a thread's job ends, whatever happens to its awaiter."""
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    job.add_done_callback(lambda _: loop.call_soon_threadsafe(settle))
    return done
