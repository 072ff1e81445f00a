"""How an object is verified, and hashing a file that is written out of order.

Owns the verification plan (single-part ETag = MD5 of the file; multipart ETag = MD5 of the
per-part MD5s aligned to the original upload's part boundaries), the download ranges (never
crossing a part boundary), and ``Tracker``: in-order MD5s of segments fed by several
writer threads. Bytes that arrive in order are hashed from memory as they stream; bytes that
arrive early are re-read from the file once the prefix before them is complete. Must not talk
to S3 or decide policy (strict or best-effort).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_MULTI_RE = re.compile(r"^([0-9a-f]{32})-([1-9][0-9]{0,4})$")
_READ = 1 << 20


def etag_parts(etag: str) -> int | None:
    """0 for a single-part ETag (an MD5), N for ``<md5>-N``, None if it is neither."""
    etag = etag.strip('"').lower()
    if _MD5_RE.fullmatch(etag):
        return 0
    m = _MULTI_RE.fullmatch(etag)
    return int(m.group(2)) if m else None


def multipart_etag(part_digests: list[bytes]) -> str:
    return f"{hashlib.md5(b''.join(part_digests)).hexdigest()}-{len(part_digests)}"


@dataclass(frozen=True)
class VerifyPlan:
    """What to compute for one object. ``parts`` > 0: per-part MD5s over ``part_size``
    boundaries; ``whole``: the MD5 of the whole file; ``unverifiable``: why the ETag cannot
    be checked ('' if it can)."""

    size: int
    etag: str
    parts: int
    part_size: int
    whole: bool
    unverifiable: str = ""

    def part_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of each original upload part."""
        if not self.parts:
            return []
        return [(i * self.part_size, min((i + 1) * self.part_size, self.size))
                for i in range(self.parts)]

    def chunks(self, chunk_size: int) -> list[tuple[int, int]]:
        """Download ranges [start, end) of about ``chunk_size`` bytes whose ends fall on part
        boundaries: a large part is split, small parts are grouped whole."""
        bounds = self.part_ranges() or [(0, self.size)]
        out: list[tuple[int, int]] = []
        if self.parts and self.part_size < chunk_size:
            group = chunk_size // self.part_size
            return [(bounds[i][0], bounds[min(i + group, len(bounds)) - 1][1])
                    for i in range(0, len(bounds), group)]
        for start, end in bounds:
            out.extend((s, min(s + chunk_size, end)) for s in range(start, end, chunk_size))
        return out


def make_plan(etag: str, size: int, parts: int, part_size: int, md5: str | None) -> VerifyPlan:
    """The verification plan from the ETag, the size and the multipart layout learned from
    ``HEAD ?partNumber=1`` (parts = PartsCount, part_size = size of part 1)."""
    etag = etag.strip('"').lower()
    kind = etag_parts(etag)
    want_whole = bool(md5)
    if kind == 0:
        return VerifyPlan(size, etag, 0, 0, True)
    if kind is None:
        return VerifyPlan(size, etag, 0, 0, True, f"ETag {etag!r} is neither an MD5 nor <md5>-<N>")
    if parts != kind or part_size <= 0:
        why = (f"multipart ETag says {kind} parts but S3 reports "
               f"{parts or 'no'} parts (part size {part_size})")
        return VerifyPlan(size, etag, 0, 0, True, why)
    if not (part_size * (parts - 1) < size <= part_size * parts):
        why = (f"{parts} parts of {part_size} bytes cannot make {size} bytes: "
               "the upload used unequal parts")
        return VerifyPlan(size, etag, 0, 0, True, why)
    return VerifyPlan(size, etag, parts, part_size, want_whole)


@dataclass
class Segment:
    """One in-order MD5 over [start, end)."""

    start: int
    end: int
    pos: int = 0
    digest: bytes | None = None
    md5: object = field(default_factory=hashlib.md5)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False

    def __post_init__(self) -> None:
        self.pos = self.start
        if self.start == self.end:
            self.digest = hashlib.md5().digest()


class Tracker:
    """In-order hashing of segments of a file written by several threads, one chunk each.

    A writer calls ``wrote`` after each ``pwrite``. Whoever holds a segment's lock advances
    it over every contiguous written byte; a writer that finds the lock taken marks the
    segment dirty and moves on, and the holder re-checks after releasing, so no write is
    left unhashed and no writer waits for another's hashing.
    """

    def __init__(self, fd: int, chunks: list[tuple[int, int]], segments: list[Segment],
                 on_segment: Callable[[int, Segment], None] | None = None, *,
                 disjoint: int = 0) -> None:
        """``segments[:disjoint]`` are sorted and do not overlap (the parts of a multipart
        upload: found by bisection); the rest may overlap anything (the whole file)."""
        self.fd = fd
        self.chunks = chunks
        self.starts = [c[0] for c in chunks]
        self.written = [0] * len(chunks)
        self.segments = segments
        self.disjoint = disjoint
        self.seg_starts = [s.start for s in segments[:disjoint]]
        self.on_segment = on_segment
        self.reread = 0

    def covering(self, start: int, end: int) -> list[int]:
        """The segments that overlap [start, end)."""
        first = max(0, bisect.bisect_right(self.seg_starts, start) - 1)
        last = bisect.bisect_left(self.seg_starts, end)
        return [i for i in range(first, last) if self.segments[i].end > start] + [
            i for i in range(self.disjoint, len(self.segments))
            if self.segments[i].start < end and start < self.segments[i].end]

    def mark_complete(self, chunk: int) -> None:
        start, end = self.chunks[chunk]
        self.written[chunk] = end - start

    def wrote(self, chunk: int, offset: int, data: memoryview) -> None:
        self.written[chunk] = offset + len(data) - self.chunks[chunk][0]
        for i in self.covering(offset, offset + len(data)):
            self.feed(i, offset, data)

    def feed(self, index: int, offset: int = -1, data: memoryview | None = None) -> None:
        seg = self.segments[index]
        seg.dirty = True
        while seg.dirty and seg.digest is None:
            if not seg.lock.acquire(blocking=False):
                return
            try:
                seg.dirty = False
                self._advance(index, seg, offset, data)
            finally:
                seg.lock.release()

    def catch_up(self) -> None:
        """Hash whatever is already on disk (after a resume)."""
        for i in range(len(self.segments)):
            self.feed(i)

    def _advance(self, index: int, seg: Segment, offset: int, data: memoryview | None) -> None:
        while seg.pos < seg.end:
            c = bisect.bisect_right(self.starts, seg.pos) - 1
            avail = min(self.chunks[c][0] + self.written[c], seg.end)
            if seg.pos >= avail:
                return
            n = min(avail - seg.pos, _READ)
            if data is not None and offset <= seg.pos < offset + len(data):
                n = min(n, offset + len(data) - seg.pos)
                piece: bytes | memoryview = data[seg.pos - offset:seg.pos - offset + n]
            else:
                piece = os.pread(self.fd, n, seg.pos)
                if len(piece) != n:
                    raise OSError(f"short read at {seg.pos}: {len(piece)} of {n} bytes")
                self.reread += n
            seg.md5.update(piece)  # type: ignore[attr-defined]
            seg.pos += n
        seg.digest = seg.md5.digest()  # type: ignore[attr-defined]
        if self.on_segment is not None:
            self.on_segment(index, seg)

    @property
    def complete(self) -> bool:
        return all(s.digest is not None for s in self.segments) and all(
            w == e - s for w, (s, e) in zip(self.written, self.chunks, strict=True))
