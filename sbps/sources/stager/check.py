"""Checking cache files against their verification records: cheap at start, full re-hash.

Owns the start-up check (one stat per file against its record; leftovers of interrupted
writes tidied) and the full re-hash of one file (rate-limited, stoppable, same MD5s as the
download computed). Returns findings; quarantining and reporting are the caller's. Must not
download or evict.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass

from sbps.sources.stager.hashing import multipart_etag
from sbps.sources.stager.layout import Layout
from sbps.sources.stager.records import Record, read_record
from sbps.sources.stager.throttle import TokenBucket

_READ = 1 << 20


@dataclass(frozen=True)
class CacheFinding:
    digest: str
    code: str
    reason: str


@dataclass(frozen=True)
class DirCheck:
    records: dict[str, Record]
    bad: list[CacheFinding]
    removed: list[str]


def check_dir(layout: Layout) -> DirCheck:
    """Compare each cache file with its record (size, inode, mtime); drop leftovers that
    cannot be used: records without a file, partials without a progress log, and the
    reverse. Partials with their progress logs are kept for resume."""
    os.makedirs(layout.root, mode=0o755, exist_ok=True)
    names = os.listdir(layout.root)
    found: dict[str, set[str]] = {}
    for name in names:
        kd = layout.classify(name)
        if kd is not None:
            found.setdefault(kd[1], set()).add(kd[0])
    records: dict[str, Record] = {}
    bad: list[CacheFinding] = []
    removed: list[str] = []
    for digest, kinds in sorted(found.items()):
        if "final" in kinds:
            record = read_record(layout.record(digest)) if "record" in kinds else None
            try:
                st = os.stat(layout.final(digest))
            except FileNotFoundError:
                continue
            if record is None or record.digest != digest:
                bad.append(CacheFinding(digest, "unrecorded", "cache file has no valid "
                                   "verification record"))
            elif not record.matches(st):
                bad.append(CacheFinding(digest, "changed", (
                    f"cache file changed since verification: size/inode/mtime "
                    f"{st.st_size}/{st.st_ino}/{st.st_mtime_ns}, recorded "
                    f"{record.size}/{record.inode}/{record.mtime_ns}")))
            else:
                records[digest] = record
        elif "record" in kinds:
            removed.append(layout.record(digest))
        if ("partial" in kinds) != ("progress" in kinds):
            removed.append(layout.partial(digest) if "partial" in kinds
                           else layout.progress(digest))
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    for name in names:
        if name.endswith(".record.tmp"):
            os.unlink(os.path.join(layout.root, name))
    return DirCheck(records, bad, removed)


def rehash(path: str, record: Record, bucket: TokenBucket,
           stop: threading.Event) -> CacheFinding | None:
    """Re-read a cache file and compare it with what was verified. None when it matches
    (or when ``stop`` was set part-way, which proves nothing either way)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not record.matches(st):
            return CacheFinding(record.digest, "changed", "cache file changed since verification")
        whole = hashlib.md5()
        parts: list[bytes] = []
        part = hashlib.md5()
        pos = 0
        while pos < record.size:
            if stop.is_set():
                return None
            n = min(_READ, record.size - pos)
            if record.parts:
                n = min(n, record.part_size - pos % record.part_size)
            bucket.take(n, stop)
            data = os.pread(fd, n, pos)
            if len(data) != n:
                return CacheFinding(record.digest, "size_mismatch", f"short read at {pos}")
            if record.md5:
                whole.update(data)
            pos += n
            if record.parts:
                part.update(data)
                if pos % record.part_size == 0 or pos == record.size:
                    parts.append(part.digest())
                    part = hashlib.md5()
    finally:
        os.close(fd)
    if record.md5 and whole.hexdigest() != record.md5:
        return CacheFinding(record.digest, "md5_mismatch",
                       f"content MD5 {whole.hexdigest()}, verified {record.md5}")
    if record.parts and multipart_etag(parts) != record.etag:
        return CacheFinding(record.digest, "etag_mismatch",
                       f"content ETag {multipart_etag(parts)}, verified {record.etag}")
    return None
