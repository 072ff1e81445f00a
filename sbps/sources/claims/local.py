"""``lun_allocation = "hash"``: ids from the hash and the local journal alone, no S3 writes.

Owns the allocation rule of hash mode. It is the claims rule applied to the journal only:
an identity already in the journal keeps its id for life; a new identity takes the first id
in its probe order that the journal does not show as held or quarantined. Workers do not
see each other's journals, so two workers agree only if identities arrive in an order that
collides the same way: the registry logs that at start. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from sbps.core.model import Claim, Identity
from sbps.sources.claims import transitions as t
from sbps.sources.claims.failures import ClaimMissing, RangeFull
from sbps.sources.claims.ids import is_free, preferred_order
from sbps.sources.claims.journal import Entry, Journal


def claim(journal: Journal, identity: Identity, hostname: str, lun_min: int, lun_max: int,
          quarantine: float, now: float, pe_etag: str | None = None,
          preferred: int | None = None) -> Claim:
    entry = journal.by_digest(identity.digest)
    if entry is not None:
        new = t.joined(entry.claim, hostname, pe_etag, now)
        journal.put(Entry(new))
        return new
    for lun_id in preferred_order(identity.digest, lun_min, lun_max, preferred):
        taken = journal.claims.get(lun_id)
        if taken is None or is_free(taken.claim, now, quarantine):
            new = Claim(lun_id=lun_id, identity_key=identity.key, digest=identity.digest,
                        holders=frozenset({hostname}), pe_etag=pe_etag, created_at=now,
                        updated_at=now)
            journal.put(Entry(new))
            return new
    raise RangeFull(f"LUN ids {lun_min}..{lun_max}: none free for {identity.key} "
                    "(all held or in quarantine)")


def release(journal: Journal, digest: str, hostname: str, now: float) -> Claim | None:
    entry = journal.by_digest(digest)
    if entry is None:
        return None
    new = t.left(entry.claim, hostname, now)
    journal.put(Entry(new))
    return new


def update(journal: Journal, identity: Identity, fn: Callable[[Claim], Claim]) -> Claim:
    entry = journal.by_digest(identity.digest)
    if entry is None:
        raise ClaimMissing(f"{identity.key}: no claim in the local journal")
    new = fn(entry.claim)
    journal.put(Entry(new))
    return new


def release_id(journal: Journal, lun_id: int, now: float, force: bool) -> Claim:
    entry = journal.claims.get(lun_id)
    if entry is None:
        raise ClaimMissing(f"LUN {lun_id}: no claim in the local journal")
    new = t.cleared(entry.claim, now, force=force, orphan=False)
    journal.put(Entry(new))
    return new
