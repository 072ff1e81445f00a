"""The cache directory's contents: scanning, space accounting, eviction and quarantine.

Owns what is on disk and how much room it takes, the choice of what to evict (least recently
used, never a file in use or being written) and moving bad files aside. Pure decisions are
separate from the few file operations. Must not download or hash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sbps.sources.stager.errors import CacheFull
from sbps.sources.stager.layout import Layout, fsync_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheFile:
    """One file the stager wrote. ``kind``: final, record, partial, progress, quarantine."""

    kind: str
    digest: str
    path: str
    size: int
    mtime: float


def scan(layout: Layout) -> list[CacheFile]:
    """Every file of ours in the cache and quarantine directories; others are ignored."""
    out: list[CacheFile] = []
    for directory, quarantine in ((layout.root, False), (layout.quarantine_dir, True)):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if quarantine:
                digest = name.split(".", 1)[0]
                kind_digest: tuple[str, str] | None = ("quarantine", digest)
            else:
                kind_digest = layout.classify(name)
            if kind_digest is None:
                continue
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            out.append(CacheFile(kind_digest[0], kind_digest[1], path, info.st_size,
                                 info.st_mtime))
    return out


def used_bytes(files: Collection[CacheFile], in_flight: Mapping[str, int]) -> int:
    """Bytes the cache takes: files, except partials of running downloads, which count by
    their reservation instead (so a download's room is held from its first byte)."""
    on_disk = sum(f.size for f in files
                  if not (f.kind == "partial" and f.digest in in_flight))
    return on_disk + sum(in_flight.values())


def choose_victims(files: Collection[CacheFile], *, budget: int, need: int,
                   keep: Collection[str], in_flight: Mapping[str, int],
                   last_used: Mapping[str, float], what: str,
                   hint: str = "raise stage.max_bytes or retire images") -> list[CacheFile]:
    """The files to delete so ``need`` more bytes fit in ``budget``: quarantined files
    first, then abandoned partial downloads and cache files by least recent use. Files in
    ``keep`` (in use) or being written are never chosen. Raises CacheFull, choosing
    nothing, if even evicting every candidate would not make room."""
    used = used_bytes(files, in_flight)
    free = budget - used
    if need <= free:
        return []
    protected = set(keep) | set(in_flight)
    rank = {"quarantine": 0, "partial": 1, "progress": 1, "final": 1}
    groups: dict[tuple[str, str], list[CacheFile]] = {}
    for f in files:
        if f.kind == "record" or (f.digest in protected and f.kind != "quarantine"):
            continue
        key = (f.kind if f.kind == "quarantine" else "cache", f.path if
               f.kind == "quarantine" else f.digest)
        groups.setdefault(key, []).append(f)
    records = {f.digest: f for f in files if f.kind == "record"}

    def order(item: tuple[tuple[str, str], list[CacheFile]]) -> tuple[int, float]:
        members = item[1]
        first = members[0]
        stamp = last_used.get(first.digest, max(m.mtime for m in members))
        return rank[first.kind], stamp

    victims: list[CacheFile] = []
    for (group, _), members in sorted(groups.items(), key=order):
        if free >= need:
            break
        victims.extend(members)
        if group == "cache" and members[0].digest in records:
            victims.append(records[members[0].digest])
        free += sum(m.size for m in members)
    if free < need:
        in_use = sum(f.size for f in files if f.digest in set(keep) and f.kind == "final")
        raise CacheFull(
            f"{what} needs {need} bytes but the cache has {budget - used} of {budget} "
            f"bytes free ({used} used, {in_use} by images in use, "
            f"{free - (budget - used)} evictable): {hint}",
            needed=need, free=max(0, budget - used))
    return victims


def remove(layout: Layout, victims: Collection[CacheFile]) -> None:
    for f in victims:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f.path)
        log.info("evicted cache file", extra={"digest": f.digest, "action": "evict",
                                               "path": f.path, "bytes": f.size})
    if victims:
        fsync_dir(layout.root)


def quarantine(layout: Layout, digest: str, stamp: float) -> str | None:
    """Move a bad cache file aside (its exporter keeps the open inode) and drop its
    record. Returns the new path, or None if the file was already gone."""
    os.makedirs(layout.quarantine_dir, mode=0o755, exist_ok=True)
    target = layout.quarantined(digest, int(stamp))
    try:
        os.replace(layout.final(digest), target)
    except FileNotFoundError:
        target = ""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(layout.record(digest))
    fsync_dir(layout.root)
    if target:
        fsync_dir(layout.quarantine_dir)
    return target or None
