"""The cache budget: how many bytes the cache may take now, and which limit sets it.

Two limits, the lower wins: ``stage.max_bytes`` (a fixed size, 0 = none) and
``stage.keep_free`` (a fraction of the cache file system's size that staging leaves free,
whoever else fills the file system). The default (keep_free = 0.1, no fixed size) cannot fill
the worker's disk: a field worker's ~50 GiB of images fit on its disk or wait, failed as
``cache_full``, without taking the last 10 % from kubelet, containerd or the logs. Owns the
arithmetic and one ``statvfs``; must not delete or log.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass

from sbps.config import StageConfig
from sbps.sources.stager.cache import CacheFile

NO_LIMIT = "none"
MAX_BYTES = "max_bytes"
KEEP_FREE = "keep_free"


@dataclass(frozen=True)
class Budget:
    """The budget now: ``limit`` bytes (0: none) set by ``source`` (one of the names above)."""

    limit: int
    source: str
    fs_size: int
    fs_free: int

    def hint(self, cfg: StageConfig, cache_dir: str) -> str:
        """What an operator can change when this budget binds."""
        if self.source == KEEP_FREE:
            return (f"the file system of {cache_dir} keeps stage.keep_free = "
                    f"{cfg.keep_free:g} of its {self.fs_size} bytes free ({self.fs_free} "
                    f"free now): free space there, lower stage.keep_free, or retire images")
        return "raise stage.max_bytes or retire images"


def measure(cache_dir: str) -> tuple[int, int]:
    """(size, bytes free to us) of the file system under ``cache_dir``."""
    st = os.statvfs(cache_dir)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def compute(cfg: StageConfig, files: Collection[CacheFile], fs: tuple[int, int]) -> Budget:
    """The budget, given the cache's files on disk (every kind, partials as written) and
    its file system's (size, free).

    The keep_free limit is what the cache holds on disk plus what the file system has free,
    less the floor: compared with ``cache.used_bytes`` (which counts running downloads by
    their reservation), an image fits only if the floor stays free once every running
    download has finished.
    """
    size, free = fs
    limits: list[tuple[int, str]] = []
    if cfg.max_bytes:
        limits.append((cfg.max_bytes, MAX_BYTES))
    if cfg.keep_free > 0:
        on_disk = sum(f.size for f in files)
        limits.append((max(1, on_disk + free - int(cfg.keep_free * size)), KEEP_FREE))
    if not limits:
        return Budget(0, NO_LIMIT, size, free)
    limit, source = min(limits)
    return Budget(limit, source, size, free)


def now(cfg: StageConfig, cache_dir: str, files: Collection[CacheFile]) -> Budget:
    """The budget of the cache in ``cache_dir`` now (one statvfs when keep_free is on)."""
    return compute(cfg, files, measure(cache_dir) if cfg.keep_free > 0 else (0, 0))
