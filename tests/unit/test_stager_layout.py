"""The cache layout knows its names: which digest's file backs a backstore at a path."""

from __future__ import annotations

from sbps.core import identity
from sbps.core.model import CacheDir
from sbps.sources.stager.layout import Layout

DIGEST = identity.digest("s3://boot-images/a/rootfs|e1")


def test_the_digest_of_a_backing_path() -> None:
    layout = Layout("/var/lib/sbps/cache")
    assert layout.digest_of(layout.final(DIGEST)) == DIGEST
    # A backstore keeps the path it was made with: the cache reached another way.
    assert layout.digest_of(f"/srv/cache-link/{DIGEST}.squashfs") == DIGEST


def test_anything_else_backs_no_cache_file() -> None:
    layout = Layout("/var/lib/sbps/cache")
    for path in (layout.partial(DIGEST), layout.record(DIGEST),
                 "/var/lib/s3fs/boot-images/a/rootfs",
                 f"/var/lib/sbps/cache/quarantine/{DIGEST}.1700000000.squashfs",
                 f"/var/lib/sbps/cache/{DIGEST[:15]}.squashfs"):
        assert layout.digest_of(path) is None, path


def test_the_cache_directory_holds_paths_below_it_only() -> None:
    cache = CacheDir("/var/lib/sbps/cache/")
    assert cache.holds(f"/var/lib/sbps/cache/{DIGEST}.squashfs")
    assert not cache.holds(f"/var/lib/sbps/cache2/{DIGEST}.squashfs")
    assert not cache.holds("/var/lib/sbps/cache")
