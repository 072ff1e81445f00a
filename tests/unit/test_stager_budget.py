"""The cache budget: the lower of stage.max_bytes and what stage.keep_free leaves of the
cache's file system, by table."""

from __future__ import annotations

import dataclasses

import pytest

from sbps.config import StageConfig
from sbps.sources.stager.budget import KEEP_FREE, MAX_BYTES, NO_LIMIT, compute
from sbps.sources.stager.cache import CacheFile

GIB = 2**30


def files(*sizes: int) -> list[CacheFile]:
    return [CacheFile("final", f"{n:056x}", f"/c/{n}", s, 0.0) for n, s in enumerate(sizes)]


@pytest.mark.parametrize(("max_bytes", "keep_free", "cached", "fs", "limit", "source"), [
    # nothing set: no limit, whatever the disk
    (0, 0.0, (), (100 * GIB, 1 * GIB), 0, NO_LIMIT),
    # the default floor on a 100 GiB disk with 60 GiB free and 20 GiB cached: 70 GiB
    (0, 0.1, (20 * GIB,), (100 * GIB, 60 * GIB), 70 * GIB, KEEP_FREE),
    # a fixed budget below what the floor leaves wins
    (50 * GIB, 0.1, (20 * GIB,), (100 * GIB, 60 * GIB), 50 * GIB, MAX_BYTES),
    # others filled the disk: the floor leaves less than the fixed budget (and less than
    # the cache holds: unused files go when an image needs room)
    (50 * GIB, 0.1, (20 * GIB,), (100 * GIB, 5 * GIB), 15 * GIB, KEEP_FREE),
    # below the floor already, with nothing cached: never 0 (0 would mean no limit)
    (0, 0.1, (), (100 * GIB, 2 * GIB), 1, KEEP_FREE),
    # a field worker's 50 GiB of images on a 500 GiB disk: room
    (0, 0.1, (50 * GIB,), (500 * GIB, 300 * GIB), 300 * GIB, KEEP_FREE),
])
def test_budget(max_bytes: int, keep_free: float, cached: tuple[int, ...], fs: tuple[int, int],
                limit: int, source: str) -> None:
    cfg = dataclasses.replace(StageConfig(), max_bytes=max_bytes, keep_free=keep_free)
    got = compute(cfg, files(*cached), fs)
    assert (got.limit, got.source) == (limit, source)


def test_default_cannot_fill_the_disk() -> None:
    """Whatever the disk, staging up to the default budget leaves keep_free of it free."""
    cfg = StageConfig()
    assert cfg.max_bytes == 0 and cfg.keep_free > 0
    for size, free, cached in ((100 * GIB, 60 * GIB, 20 * GIB), (10 * GIB, 9 * GIB, 0),
                               (2000 * GIB, 100 * GIB, 900 * GIB)):
        b = compute(cfg, files(cached), (size, free))
        free_after = free - (b.limit - cached)  # the cache grown to its budget
        assert free_after >= cfg.keep_free * size - 1
    hint = compute(cfg, files(), (100 * GIB, 1 * GIB)).hint(cfg, "/var/lib/sbps/cache")
    assert "stage.keep_free" in hint and "/var/lib/sbps/cache" in hint
