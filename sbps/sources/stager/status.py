"""Counters and the status snapshot of the stager, for metrics and the status API.

Owns the mutable counters (touched only from the event loop, or under a lock from worker
threads) and the frozen snapshot built from them. Must not do I/O.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InFlight:
    digest: str
    size: int
    done: int
    started: float


@dataclass(frozen=True)
class StageStatus:
    """A snapshot; every counter is cumulative since the stager was built."""

    bytes_downloaded: int
    downloads_ok: int
    failures: tuple[tuple[str, int], ...]
    best_effort: int
    retries: int
    evicted_files: int
    evicted_bytes: int
    quarantined: int
    rehashed_bytes: int
    rehash_running: bool
    in_flight: tuple[InFlight, ...]
    durations: tuple[tuple[str, float], ...]
    cache_used: int
    cache_budget: int
    cache_files: int
    #: An image waits because the budget binds (set by its CacheFull, cleared by the next
    #: reservation that fits).
    cache_full: bool


@dataclass
class StagingCounters:
    bytes_downloaded: int = 0
    downloads_ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    best_effort: int = 0
    retries: int = 0
    evicted_files: int = 0
    evicted_bytes: int = 0
    quarantined: int = 0
    rehashed_bytes: int = 0
    rehash_running: bool = False
    cache_full: bool = False
    progress: dict[str, InFlight] = field(default_factory=dict)
    durations: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=32))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_bytes(self, digest: str, n: int) -> None:
        """Called from download threads."""
        with self.lock:
            self.bytes_downloaded += n
            cur = self.progress.get(digest)
            if cur is not None:
                self.progress[digest] = InFlight(cur.digest, cur.size, cur.done + n,
                                                 cur.started)

    def snapshot(self, used: int, budget: int, files: int) -> StageStatus:
        with self.lock:
            return StageStatus(
                self.bytes_downloaded, self.downloads_ok, tuple(sorted(self.failures.items())),
                self.best_effort, self.retries, self.evicted_files, self.evicted_bytes,
                self.quarantined, self.rehashed_bytes, self.rehash_running,
                tuple(self.progress.values()), tuple(self.durations), used, budget, files,
                self.cache_full)
