"""The claims-mode protocol over S3: how a worker agrees on an id for an identity.

Owns the sequence of conditional reads and writes (see ``sbps.sources.claims.registry`` for the
design and why). Every write is conditional and every lost race re-reads and re-decides, in
loops bounded by ``attempts``. Keeps the journal in step with what it reads and writes but
never saves it (the registry does, once per call). Not thread-safe: the registry holds a
lock around every call. Must not touch the target.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from sbps.core.errors import InputError
from sbps.core.model import Claim, Identity
from sbps.core.rejections import Rejections
from sbps.sources.claims import transitions as t
from sbps.sources.claims.codec import IndexRecord
from sbps.sources.claims.failures import ClaimContention, ClaimMissing, RangeFull
from sbps.sources.claims.ids import is_free, preferred_order
from sbps.sources.claims.journal import Entry, Journal
from sbps.sources.claims.store import ClaimStore
from sbps.sources.s3 import PreconditionFailed

log = logging.getLogger(__name__)


class Lost(Exception):
    """The claim read no longer belongs to the identity (taken over, or gone)."""


class Remote:
    def __init__(self, store: ClaimStore, journal: Journal, hostname: str, lun_min: int,
                 lun_max: int, quarantine: float, attempts: int,
                 clock: Callable[[], float], rejections: Rejections | None = None) -> None:
        self.rejections = rejections or Rejections()
        self.store = store
        self.j = journal
        self.host = hostname
        self.lun_min, self.lun_max = lun_min, lun_max
        self.quarantine = quarantine
        self.attempts = attempts
        self.clock = clock

    def read(self, lun_id: int) -> Entry | None:
        """The claim on ``lun_id`` (None: there is none); an unreadable claim object is
        reported to ``rejections`` once and raised (InputError)."""
        try:
            entry = self.store.read_claim(lun_id)
        except InputError as exc:
            self.rejections.reject("claim", exc)
            raise
        self.rejections.accepted("claim", str(self.store.lun_url(lun_id)))
        if entry is None:
            self.j.drop(lun_id)
        else:
            self.j.put(entry)
        return entry

    def modify(self, lun_id: int, digest: str | None, fn: Callable[[Claim], Claim],
               entry: Entry | None = None) -> Entry:
        """Apply ``fn`` to the claim on ``lun_id`` with If-Match, re-reading on a lost race.

        Raises Lost if the claim is gone or (with ``digest``) belongs to another identity.
        """
        for _ in range(self.attempts):
            if entry is None or entry.etag is None:
                entry = self.read(lun_id)
            if entry is None or (digest is not None and entry.claim.digest != digest):
                raise Lost()
            new = fn(entry.claim)
            if new is entry.claim:
                return entry
            try:
                written = self.store.replace_claim(new, str(entry.etag))
            except PreconditionFailed:
                entry = None
                continue
            self.j.put(written)
            return written
        raise ClaimContention(f"LUN {lun_id}: the claim kept changing under "
                              f"{self.attempts} conditional writes")

    def join(self, pe_etag: str | None) -> Callable[[Claim], Claim]:
        return lambda c: t.joined(c, self.host, pe_etag, self.clock())

    def scan(self) -> tuple[dict[int, Entry], set[int]]:
        """All claims: one listing, and a GET only for claims whose ETag changed.

        Also returns the ids whose claims cannot be parsed: they are never overwritten.
        """
        listing = self.store.list_claims()
        view: dict[int, Entry] = {}
        broken: set[int] = set()
        for lun_id, etag in sorted(listing.items()):
            cached = self.j.claims.get(lun_id)
            if cached is not None and cached.etag == etag:
                view[lun_id] = cached
                continue
            try:
                entry = self.read(lun_id)
            except InputError:  # reported once by read(); its id is left alone
                broken.add(lun_id)
                continue
            if entry is not None:
                view[lun_id] = entry
        for lun_id in [i for i, e in self.j.claims.items() if e.etag and i not in listing]:
            self.j.drop(lun_id)
        return view, broken

    def agreed(self, identity: Identity) -> Entry | None:
        """The claim the key index names for this identity, if it is still the identity's."""
        found = self.store.read_index(identity.digest)
        if found is None:
            return None
        entry = self.read(found[1].lun_id)
        if entry is None or entry.claim.digest != identity.digest:
            return None
        self.j.set_index(identity.digest, found[1])
        return entry

    def update(self, identity: Identity, fn: Callable[[Claim], Claim]) -> Claim:
        """Apply ``fn`` to the identity's agreed claim (PE etag record or promote)."""
        entry = self.agreed(identity)
        if entry is None:
            raise ClaimMissing(f"{identity.key}: no agreed claim in the registry")
        try:
            return self.modify(entry.claim.lun_id, identity.digest, fn, entry).claim
        except Lost as exc:
            raise ClaimMissing(f"{identity.key}: the claim on LUN {entry.claim.lun_id} was "
                               "taken over") from exc

    def release_id(self, lun_id: int, force: bool) -> Claim:
        found = self.store.read_claim(lun_id)
        if found is None:
            raise ClaimMissing(f"LUN {lun_id}: no claim at {self.store.lun_url(lun_id)}")
        idx = self.store.read_index(found.claim.digest)
        orphan = idx is None or idx[0].lun_id != lun_id
        return self.modify(lun_id, None, lambda c: t.cleared(
            c, self.clock(), force=force, orphan=orphan), found).claim

    def claim(self, identity: Identity, pe_etag: str | None,
              preferred: int | None = None) -> Claim:
        digest = identity.digest
        for _ in range(self.attempts):
            found = self.store.read_index(digest)
            stale: str | None = None
            if found is not None:
                try:
                    entry = self.modify(found[1].lun_id, digest, self.join(pe_etag))
                except Lost:
                    stale = found[1].etag
                else:
                    self.j.set_index(digest, found[1])
                    return entry.claim
            entry = self.acquire(identity, pe_etag, preferred)
            rec = IndexRecord(entry.claim.lun_id, identity.key, digest, self.clock())
            try:
                self.j.set_index(digest, self.store.publish_index(rec, stale))
            except PreconditionFailed:
                # Another worker agreed first; if on another id, ours was never exported.
                winner = self.store.read_index(digest)
                if winner is not None and winner[0].lun_id != entry.claim.lun_id:
                    with contextlib.suppress(Lost):
                        self.modify(entry.claim.lun_id, digest,
                                    lambda c: t.abandoned(c, self.host, self.clock()))
                continue
            log.info("claimed LUN id", extra={"lun": entry.claim.lun_id,
                                               "identity": identity.key, "action": "claim"})
            return entry.claim
        raise ClaimContention(f"{identity.key}: the key index kept changing under "
                              f"{self.attempts} attempts")

    def acquire(self, identity: Identity, pe_etag: str | None,
                preferred: int | None = None) -> Entry:
        """Hold some id for the identity: an existing claim of it, else the first free id."""
        view, broken = self.scan()
        order = preferred_order(identity.digest, self.lun_min, self.lun_max, preferred)
        rank = {lun_id: n for n, lun_id in enumerate(order)}
        # A claim a crashed worker (or a concurrent one) made but did not yet agree on.
        own = [e for e in view.values() if e.claim.digest == identity.digest]
        for e in sorted(own, key=lambda e: rank.get(e.claim.lun_id, len(order))):
            with contextlib.suppress(Lost):
                return self.modify(e.claim.lun_id, identity.digest, self.join(pe_etag), e)
        for lun_id in order:
            entry = view.get(lun_id)
            for _ in range(0 if lun_id in broken else self.attempts):
                now = self.clock()
                fresh = Claim(lun_id=lun_id, identity_key=identity.key, digest=identity.digest,
                              holders=frozenset({self.host}), pe_etag=pe_etag,
                              created_at=now, updated_at=now)
                try:
                    if entry is None:
                        written = self.store.create_claim(fresh)
                    elif entry.claim.digest == identity.digest:
                        return self.modify(lun_id, identity.digest, self.join(pe_etag), entry)
                    elif is_free(entry.claim, now, self.quarantine) and entry.etag:
                        written = self.store.replace_claim(fresh, entry.etag)
                    else:
                        break
                except (PreconditionFailed, Lost):
                    try:
                        entry = self.read(lun_id)
                    except InputError:
                        break
                    continue
                self.j.put(written)
                return written
        raise RangeFull(f"LUN ids {self.lun_min}..{self.lun_max}: none free for "
                        f"{identity.key} (all held or in quarantine)")
