"""Pure parts of the stager: verification plans, out-of-order hashing, eviction choice."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from sbps.core.errors import InputError
from sbps.sources.stager import CacheFull, check_digest
from sbps.sources.stager.cache import CacheFile, choose_victims
from sbps.sources.stager.hashing import Segment, Tracker, etag_parts, make_plan, multipart_etag
from sbps.sources.stager.layout import Layout
from sbps.sources.stager.throttle import TokenBucket

MIB = 2**20


def test_etag_kinds() -> None:
    assert etag_parts("d41d8cd98f00b204e9800998ecf8427e") == 0
    assert etag_parts('"b6ea7a2314d54dead0c94223863b3488-1977"') == 1977
    for bad in ("", "xyz", "d41d8cd98f00b204e9800998ecf8427e-0", "d41d8cd98f00b204e9800998ecf8427e\n"):
        assert etag_parts(bad) is None


def test_plans() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert make_plan(md5, 10, 0, 0, None).whole
    plan = make_plan(md5 + "-3", 11 * MIB, 3, 5 * MIB, None)
    assert (plan.parts, plan.whole, plan.unverifiable) == (3, False, "")
    assert plan.part_ranges() == [(0, 5 * MIB), (5 * MIB, 10 * MIB), (10 * MIB, 11 * MIB)]
    chunks = plan.chunks(3 * MIB)
    assert chunks == [(0, 3 * MIB), (3 * MIB, 5 * MIB), (5 * MIB, 8 * MIB),
                      (8 * MIB, 10 * MIB), (10 * MIB, 11 * MIB)]
    assert plan.chunks(10 * MIB) == [(0, 10 * MIB), (10 * MIB, 11 * MIB)]
    assert plan.chunks(16 * MIB) == [(0, 11 * MIB)]
    assert make_plan(md5 + "-3", 11 * MIB, 3, 5 * MIB, md5).whole
    assert "parts" in make_plan(md5 + "-3", 11 * MIB, 0, 0, None).unverifiable
    assert "unequal" in make_plan(md5 + "-3", 30 * MIB, 3, 5 * MIB, None).unverifiable
    assert make_plan("not-an-md5", 1, 0, 0, None).unverifiable


@pytest.mark.parametrize("span", [300_000, 2 * (MIB + 7) + 100])
def test_tracker_hashes_out_of_order_writes(tmp_path: Path, span: int) -> None:
    data = random.Random(1).randbytes(3 * MIB + 12345)
    part = MIB + 7
    parts = [(s, min(s + part, len(data))) for s in range(0, len(data), part)]
    if span < part:
        chunks = [(s, min(s + span, e)) for ps, e in parts for s in range(ps, e, span)]
    else:  # ranges over several parts; 64 KiB writes straddle part boundaries
        chunks = [(s, min(s + span, len(data))) for s in range(0, len(data), span)]
    segments = [Segment(s, e) for s, e in parts] + [Segment(0, len(data))]
    done: list[int] = []
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, len(data))
        tracker = Tracker(fd, chunks, segments, lambda i, s: done.append(i),
                          disjoint=len(parts))
        order = list(range(len(chunks)))
        random.Random(2).shuffle(order)

        def write(indexes: list[int]) -> None:
            for i in indexes:
                start, end = chunks[i]
                for pos in range(start, end, 65536):
                    piece = memoryview(data[pos:min(pos + 65536, end)])
                    os.pwrite(fd, piece, pos)
                    tracker.wrote(i, pos, piece)

        threads = [threading.Thread(target=write, args=(order[k::3],)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert tracker.complete
        assert sorted(done) == list(range(len(segments)))
        assert segments[-1].digest == hashlib.md5(data).digest()
        assert [s.digest for s in segments[:-1]] == [hashlib.md5(data[s:e]).digest()
                                                     for s, e in parts]
    finally:
        os.close(fd)
    assert multipart_etag([hashlib.md5(b"a").digest()]) == (
        hashlib.md5(hashlib.md5(b"a").digest()).hexdigest() + "-1")


def test_digests_are_the_only_names(tmp_path: Path) -> None:
    layout = Layout.at(str(tmp_path))
    good = hashlib.sha224(b"k").hexdigest()
    assert layout.final(good) == str(tmp_path / f"{good}.squashfs")
    assert layout.classify(f".{good}.partial") == ("partial", good)
    assert layout.classify("../x.squashfs") is None
    for bad in ("..", "a/b", good.upper(), good + "/", good[:-1]):
        with pytest.raises(InputError):
            check_digest(bad)


def _files(*spec: tuple[str, str, int, float]) -> list[CacheFile]:
    return [CacheFile(kind, d, f"/c/{d}.{kind}", size, mtime) for kind, d, size, mtime in spec]


def test_eviction_order_and_refusal() -> None:
    files = _files(("final", "a", 40, 1.0), ("record", "a", 0, 1.0), ("final", "b", 40, 2.0),
                   ("quarantine", "c", 10, 9.0), ("partial", "d", 30, 0.5),
                   ("progress", "d", 0, 0.5))
    kw = {"budget": 130, "in_flight": {}, "what": "x"}
    assert choose_victims(files, need=10, keep=(), last_used={}, **kw) == []
    # Quarantine first, then the least recently used group (partial d, mtime 0.5).
    got = choose_victims(files, need=40, keep=(), last_used={}, **kw)
    assert [(f.kind, f.digest) for f in got] == [("quarantine", "c"), ("partial", "d"),
                                                 ("progress", "d")]
    # Use times override mtimes; a final file goes with its record.
    got = choose_victims(files, need=60, keep={"d"}, last_used={"a": 5.0, "b": 3.0}, **kw)
    assert [(f.kind, f.digest) for f in got] == [("quarantine", "c"), ("final", "b")]
    got = choose_victims(files, need=90, keep={"d"}, last_used={"a": 5.0, "b": 3.0}, **kw)
    assert ("record", "a") in [(f.kind, f.digest) for f in got]
    with pytest.raises(CacheFull) as err:
        choose_victims(files, need=200, keep={"a"}, last_used={}, **kw)
    assert (err.value.needed, err.value.free) == (200, 10)


def test_token_bucket_goes_into_debt() -> None:
    now = [0.0]
    bucket = TokenBucket(1000, burst=1000, clock=lambda: now[0])
    assert bucket.delay(1000) == 0.0
    assert bucket.delay(500) == pytest.approx(0.5)
    now[0] = 1.5
    assert bucket.delay(1000) == 0.0
    assert TokenBucket(0).delay(10**12) == 0.0
