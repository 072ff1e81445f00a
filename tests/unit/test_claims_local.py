"""Hash mode, the journal file, claim bodies and the verify checks (no S3)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbps.core.errors import InputError
from sbps.core.identity import from_key
from sbps.core.model import Claim, Identity
from sbps.sources.claims import (
    Allocation,
    ClaimHeld,
    ClaimRegistry,
    RangeFull,
    Settings,
    journal_path,
    probe_order,
)
from sbps.sources.claims.codec import claim_from_bytes, claim_to_bytes
from sbps.sources.claims.journal import Entry, Journal
from sbps.sources.claims.verify import check

DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hash_registry(path: Path | None, clock: Clock, lo: int = 1, hi: int = 16,
                  host: str = "w1") -> ClaimRegistry:
    return ClaimRegistry(None, "boot-images", host,
                         Settings(lo, hi, DAY, Allocation.HASH), path, clock=clock)


IDENTS = [from_key(f"s3://boot-images/img{n}/rootfs|etag{n}") for n in range(12)]


def test_hash_mode_warns_about_arrival_order(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        hash_registry(None, Clock())
    assert "arrival" in caplog.text or "order" in caplog.text


def test_hash_mode_ids_never_move_and_survive_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = journal_path(tmp_path)
    reg = hash_registry(path, clock)
    first = {i.digest: reg.claim(i).lun_id for i in IDENTS}
    assert len(set(first.values())) == len(IDENTS)
    assert all(1 <= v <= 16 for v in first.values())
    again = hash_registry(path, clock)
    for ident in reversed(IDENTS):
        assert again.claim(ident).lun_id == first[ident.digest]
    assert again.held() == first


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_hash_mode_same_order_same_map(rnd: random.Random) -> None:
    order = list(IDENTS)
    rnd.shuffle(order)
    a, b = hash_registry(None, Clock(), host="a"), hash_registry(None, Clock(), host="b")
    assert {i.key: a.claim(i).lun_id for i in order} == {
        i.key: b.claim(i).lun_id for i in order}


def test_hash_mode_quarantine_holds(tmp_path: Path) -> None:
    clock = Clock()
    reg = hash_registry(journal_path(tmp_path), clock, lo=5, hi=5)
    a, b = IDENTS[0], IDENTS[1]
    assert reg.claim(a).lun_id == 5
    reg.release(a.digest)
    released = reg.lookup(a)
    assert released is not None and released.released_at == clock.now
    clock.now += DAY - 1
    with pytest.raises(RangeFull):
        reg.claim(b)
    assert reg.claim(a).lun_id == 5  # the same identity comes back at once
    reg.release(a.digest)
    clock.now += DAY
    assert reg.claim(b).lun_id == 5


def test_hash_mode_preferred_id(tmp_path: Path) -> None:
    reg = hash_registry(None, Clock())
    ident = IDENTS[0]
    pref = probe_order(ident.digest, 1, 16)[-1]
    assert reg.claim(ident, preferred=pref).lun_id == pref
    assert reg.claim(IDENTS[1], preferred=pref).lun_id != pref


def test_hash_mode_pe_etag_and_promote() -> None:
    reg = hash_registry(None, Clock())
    pe = from_key("s3://boot-images/PE/x.squashfs")
    assert reg.claim(pe, pe_etag="e1").pe_etag == "e1"
    assert reg.claim(pe, pe_etag="e2").pe_etag == "e1"
    assert reg.pe_changed(pe, "e2") and not reg.pe_changed(pe, "e1")
    promoted = reg.promote(pe, "e2")
    assert (promoted.pe_etag, promoted.previous_pe_etag) == ("e2", "e1")
    assert not reg.pe_changed(pe, "e2")


def test_hash_mode_release_id() -> None:
    clock = Clock()
    reg = hash_registry(None, clock)
    c = reg.claim(IDENTS[0])
    with pytest.raises(ClaimHeld):
        reg.release_id(c.lun_id)
    forced = reg.release_id(c.lun_id, force=True)
    assert forced.holders == frozenset() and forced.released_at == clock.now


def test_journal_is_replaced_atomically_and_only_when_changed(tmp_path: Path) -> None:
    clock = Clock()
    path = journal_path(tmp_path)
    reg = hash_registry(path, clock)
    reg.claim(IDENTS[0])
    stat = path.stat()
    reg.claim(IDENTS[0])  # steady: nothing changes, nothing is written
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_ino == stat.st_ino
    reg.claim(IDENTS[1])
    assert path.stat().st_ino != stat.st_ino  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    data = json.loads(path.read_text())
    assert data["bucket"] == "boot-images" and len(data["claims"]) == 2


def test_unreadable_or_foreign_journal_starts_empty(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    path.write_text("{not json")
    assert Journal.load(path, "boot-images").claims == {}
    good = Journal(path, "other-bucket")
    c = Claim(3, "k", from_key("k").digest, frozenset({"w1"}))
    good.put(Entry(c, "etag"))
    good.save()
    assert Journal.load(path, "other-bucket").claims == {3: Entry(c, "etag")}
    assert Journal.load(path, "boot-images").claims == {}


def test_claim_body_round_trip_and_strict_parsing() -> None:
    ident = from_key("s3://boot-images/a/rootfs|e")
    c = Claim(7, ident.key, ident.digest, frozenset({"w2", "w1"}), "pe", 5.0, 1.0, 2.0, "old")
    assert claim_from_bytes(claim_to_bytes(c), "x", 7) == c
    body = json.loads(claim_to_bytes(c))
    for field, value in (("digest", "0" * 56), ("lun_id", 8), ("holders", "w1"),
                         ("released_at", "yesterday"), ("identity_key", "")):
        with pytest.raises(InputError) as err:
            claim_from_bytes(json.dumps(dict(body, **{field: value})).encode(), "luns/7", 7)
        assert err.value.field == field
    with pytest.raises(InputError):
        claim_from_bytes(b"\xff", "luns/7", 7)


def _c(lun: int, ident: Identity, *holders: str) -> Claim:
    return Claim(lun, ident.key, ident.digest, frozenset(holders))


def test_verify_reports_each_kind_of_problem() -> None:
    a, b, c, d = IDENTS[:4]
    registry = [_c(1, a, "w1"), _c(2, b, "w2"), _c(3, c, "w1"), _c(4, d), _c(5, d)]
    journal = [_c(1, a, "w1"), _c(6, c, "w1")]
    exported = {1: a.name, 2: b.name, 4: a.name, 9: c.name}
    codes = {(p.obj, p.code) for p in check(registry, journal, {d.digest: 4}, exported, "w1")}
    assert codes == {("LUN 2", "not_holder"), ("LUN 4", "claim_mismatch"),
                     ("LUN 9", "claim_missing"), ("LUN 3", "held_not_exported"),
                     (d.key, "duplicate"), ("LUN 6", "journal_stale")}
    assert check([_c(1, a, "w1")], [], {a.digest: 1}, {1: a.digest}, "w1") == []
    # A desired image still staging (or failed) rightly holds its id meanwhile.
    assert check([_c(3, c, "w1")], [], {}, {}, "w1", pending={c.name}) == []
    moved = check([_c(1, a, "w1")], [], {a.digest: 2}, {1: a.name}, "w1")
    assert [p.code for p in moved] == ["index_mismatch"]
