"""Small durable files next to the cache files: verification records and download progress.

Owns their formats and the write protocol (temporary name, fsync, rename, directory fsync
for records; append and fsync for progress logs). A record says what was verified and how a
file looked then (size, inode, mtime), so a start-up check costs one stat. A progress log
lists the completed download chunks and part MD5s of a partial file so an interrupted
download resumes. Must not download, hash or decide policy.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from sbps.core.decode import DecodeError, loads
from sbps.sources.stager.layout import fsync_dir

RECORD_VERSION = 1


@dataclass(frozen=True)
class Record:
    """What was verified about one cache file, and how the file looked at that moment."""

    digest: str
    url: str
    etag: str
    size: int
    inode: int
    mtime_ns: int
    verified_at: float
    md5: str = ""
    parts: int = 0
    part_size: int = 0
    verified: bool = True
    checks: tuple[str, ...] = ()
    version: int = RECORD_VERSION

    def matches(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_ino, st.st_mtime_ns) == (self.size, self.inode,
                                                           self.mtime_ns)


def write_record(path: str, record: Record) -> None:
    tmp = path + ".tmp"
    data = json.dumps(asdict(record), sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def read_record(path: str) -> Record | None:
    """The record, or None when it is missing or unreadable (the file is then unverified)."""
    try:
        with open(path, "rb") as fh:
            raw: dict[str, Any] = loads(fh.read(65536), "state", path, expect=dict)
        raw["checks"] = tuple(raw.get("checks", ()))
        return Record(**raw)
    except (OSError, ValueError, TypeError, DecodeError):
        return None


@dataclass
class Progress:
    """Completed chunks and part MD5s of a partial download."""

    chunks: set[int] = field(default_factory=set)
    parts: dict[int, str] = field(default_factory=dict)


class ProgressLog:
    """An append-only JSON-lines file: a header naming the object version and layout, then
    one line per completed chunk or part. A torn last line (crash mid-append) is ignored."""

    def __init__(self, path: str, header: dict[str, Any]) -> None:
        self.path = path
        self.header = {"v": 1, **header}
        self._lock = threading.Lock()
        self._fh: Any = None

    def open(self) -> Progress:
        """Load the progress of the same object version and layout, or start afresh."""
        progress = self._load()
        if progress is None:
            progress = Progress()
            self._fh = open(self.path, "wb")  # noqa: SIM115 (kept open for appends)
            self._append(self.header)
        else:
            self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open for appends)
        return progress

    def _load(self) -> Progress | None:
        try:
            with open(self.path, "rb") as fh:
                lines = fh.read().split(b"\n")
        except FileNotFoundError:
            return None
        try:
            if loads(lines[0], "state", self.path) != self.header:
                return None
        except DecodeError:
            return None
        progress = Progress()
        for line in lines[1:]:
            try:
                item = loads(line, "state", self.path, expect=dict)
                if "chunk" in item:
                    progress.chunks.add(int(item["chunk"]))
                elif "part" in item:
                    progress.parts[int(item["part"])] = str(item["md5"])
            except (ValueError, TypeError, KeyError, DecodeError):
                break
        return progress

    def _append(self, item: dict[str, Any]) -> None:
        self._fh.write(json.dumps(item, sort_keys=True).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def chunk_done(self, index: int) -> None:
        with self._lock:
            self._append({"chunk": index})

    def part_done(self, index: int, md5: str) -> None:
        with self._lock:
            self._append({"part": index, "md5": md5})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
