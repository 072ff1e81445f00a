"""The LUN id registry the reconciler and ``sbpsctl luns`` use: claim, release, look up.

Owns the protocol that makes every worker agree on ids without a coordination service:

1. ``.sbps/keys/<digest>`` says which id an identity agreed on. It is created with
   If-None-Match ``*`` (or replaced with If-Match when the id it names was since taken
   over), so each identity has exactly one agreed id, whatever order workers see it in.
2. ``.sbps/luns/<id>`` says which identity owns an id and which workers hold it. It is
   created with If-None-Match ``*``, joined and left with If-Match, and taken over (If-Match
   on the released version, so two takers cannot both win) only once no worker holds it and
   ``lun_quarantine`` has passed since its release.
3. A worker returns (and so exports) a claim only once the key index names it. A worker
   that claimed an id but lost the index race leaves that id again; no one exported it, so
   it is freed at once (``released_at`` 0).

Why a key index rather than only scanning ``.sbps/luns/``: a scan gives each worker a view
at one instant, and two workers whose views (or clocks, at the end of a quarantine) differ
could each claim a different id for one identity. The index turns that into a single
conditional write per identity. Scanning is still used, once per new identity (one
paginated listing, and a GET only of claims whose ETag changed since the journal cached
them), to find a free id and any claim a crashed worker left before publishing its index.

Steady passes are served from the journal: ``claim`` of an identity this worker already
holds makes no S3 request. All methods block; async callers use an executor. One lock
serialises them, so one registry may be shared by executor threads.
Must not touch the target or decide what to export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sbps.config import TargetConfig
from sbps.config.choices import Allocation
from sbps.core.model import Claim, Identity, Problem
from sbps.core.rejections import Rejections
from sbps.sources.claims import local
from sbps.sources.claims import transitions as t
from sbps.sources.claims.ids import first_candidate, probe_order
from sbps.sources.claims.journal import FILENAME, Journal
from sbps.sources.claims.probe import StoreCheck
from sbps.sources.claims.protocol import Lost, Remote
from sbps.sources.claims.store import ClaimStore
from sbps.sources.claims.verify import check
from sbps.sources.s3 import S3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    lun_min: int = 1
    lun_max: int = 255
    quarantine: float = 86400.0
    allocation: Allocation = Allocation.CLAIMS
    prefix: str = ".sbps"
    attempts: int = 12

    @classmethod
    def from_config(cls, target: TargetConfig) -> Settings:
        return cls(target.lun_min, target.lun_max, target.lun_quarantine,
                   target.lun_allocation)


def journal_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILENAME


class ClaimRegistry:
    """Agreed LUN ids for one worker (``hostname``), cached in the journal file ``journal``
    (None: in memory only). ``persist=False`` reads the journal but never writes it, as
    ``sbpsctl`` does so as not to race the daemon that owns the file."""

    def __init__(self, s3: S3 | None, bucket: str, hostname: str, settings: Settings,
                 journal: str | Path | None, *, clock: Callable[[], float] = time.time,
                 persist: bool = True, store_check: StoreCheck | None = None,
                 rejections: Rejections | None = None) -> None:
        """``store_check`` (the marshal's): proved before the first claim write; while the
        bucket fails it, every write raises ``StoreUnsafe`` and nothing is written.
        ``rejections``: where unreadable claim objects are reported (once each)."""
        if settings.allocation is Allocation.CLAIMS and s3 is None:
            raise ValueError("lun_allocation = claims needs an S3 client")
        self.hostname = hostname
        self.settings = settings
        self.bucket = bucket
        self._s3 = s3 if settings.allocation is Allocation.CLAIMS else None
        self._path = Path(journal) if journal is not None else None
        self._persist = persist
        self._clock = clock
        self._rejections = rejections
        self._check = store_check if self._s3 is not None else None
        self.store_check = self._check
        self._lock = threading.RLock()
        self._journal: Journal | None = None
        self._remote: Remote | None = None
        if settings.allocation is Allocation.HASH:
            log.warning("lun_allocation = hash: LUN ids come from the hash and this worker's "
                        "journal only; agreement between workers then depends on the order "
                        "in which images arrive", extra={"host": hostname})

    @contextmanager
    def _state(self) -> Iterator[tuple[Journal, Remote | None]]:
        """The journal (loaded on first use) under the lock; saved after the call."""
        with self._lock:
            if self._journal is None:
                self._journal = Journal.load(self._path, self.bucket)
                if self._s3 is not None:
                    s = self.settings
                    self._remote = Remote(ClaimStore(self._s3, self.bucket, s.prefix),
                                          self._journal, self.hostname, s.lun_min, s.lun_max,
                                          s.quarantine, s.attempts, self._clock,
                                          self._rejections)
            try:
                yield self._journal, self._remote
            finally:
                if self._persist:
                    self._journal.save()

    # -- journal only: no S3 request ---------------------------------------------------

    def lookup(self, identity: Identity) -> Claim | None:
        """The journal's claim for an identity (held by this worker or not)."""
        with self._state() as (j, _):
            entry = j.by_digest(identity.digest)
            return entry.claim if entry is not None else None

    def candidates(self, identity: Identity) -> list[int]:
        """The ids this identity would try, in order (for ``sbpsctl plan``)."""
        return probe_order(identity.digest, self.settings.lun_min, self.settings.lun_max)

    def pe_changed(self, identity: Identity, etag: str) -> bool:
        """Whether a PE object's current etag differs from the one its claim carries."""
        claim = self.lookup(identity)
        return claim is not None and claim.pe_etag is not None and claim.pe_etag != etag

    def candidate(self, identity: Identity) -> int:
        """The first id this identity tries."""
        return first_candidate(identity.digest, self.settings.lun_min, self.settings.lun_max)

    def held(self) -> dict[str, int]:
        """digest -> LUN id of every claim this worker holds, from the journal."""
        with self._state() as (j, _):
            return {e.claim.digest: i for i, e in sorted(j.claims.items())
                    if e.claim.held_by(self.hostname)}

    def journal(self) -> list[Claim]:
        """Every claim the journal caches, by id."""
        with self._state() as (j, _):
            return [e.claim for _, e in sorted(j.claims.items())]

    # -- claiming and releasing --------------------------------------------------------

    def claim(self, identity: Identity, *, preferred: int | None = None,
              pe_etag: str | None = None) -> Claim:
        """This identity's agreed id, joining its holders. Idempotent; a steady call (the
        identity is held and agreed in the journal) makes no S3 request.

        ``preferred`` (an id the identity is already exported at) is tried first when the
        identity has no agreed id yet; an agreed id always wins over it.

        ``pe_etag`` is recorded only by the claim that creates the id (or on a claim that
        has none); a different recorded etag is kept: see ``pe_changed`` and ``promote``.
        """
        with self._state() as (j, remote):
            s = self.settings
            if remote is None:
                return local.claim(j, identity, self.hostname, s.lun_min, s.lun_max,
                                   s.quarantine, self._clock(), pe_etag, preferred)
            entry, idx = j.by_digest(identity.digest), j.index.get(identity.digest)
            if (entry is not None and idx is not None and idx.lun_id == entry.claim.lun_id
                    and entry.claim.held_by(self.hostname)
                    and (pe_etag is None or entry.claim.pe_etag is not None)):
                return entry.claim
            self._writable()
            return remote.claim(identity, pe_etag, preferred)

    def release(self, digest: str, lun_id: int | None = None) -> None:
        """Leave the holders of this identity's claim (found by digest in the journal, else
        on ``lun_id``); the last holder out starts the quarantine."""
        with self._state() as (j, remote):
            if remote is None:
                local.release(j, digest, self.hostname, self._clock())
                return
            entry = j.by_digest(digest)
            target = entry.claim.lun_id if entry is not None else lun_id
            if target is None:
                return
            self._writable()
            try:
                remote.modify(target, digest, lambda c: t.left(c, self.hostname,
                                                                self._clock()), entry)
            except Lost:
                if entry is not None:
                    j.drop(entry.claim.lun_id)

    def promote(self, identity: Identity, etag: str) -> Claim:
        """Make ``etag`` the content behind this PE identity's WWID on every worker.

        Only the claim changes (``previous_pe_etag`` keeps the old one); the reconciler
        retires the old version before it exports the new one.
        """
        return self._update(identity, lambda c: t.promoted(c, etag, self._clock()))

    def release_id(self, lun_id: int, *, force: bool = False) -> Claim:
        """Release an orphaned id: one without holders, or not the id its identity agreed
        on. Refused with ClaimHeld while workers hold an agreed claim, unless ``force``.
        The id then rests in quarantine like any released id."""
        with self._state() as (j, remote):
            if remote is None:
                return local.release_id(j, lun_id, self._clock(), force)
            self._writable()
            return remote.release_id(lun_id, force)

    # -- reading S3 -------------------------------------------------------------------

    def refresh(self, identity: Identity) -> Claim | None:
        """Re-read this identity's agreed claim from S3 (after ``pe_changed``, or after an
        admin's promote or release), updating the journal."""
        with self._state() as (j, remote):
            entry = j.by_digest(identity.digest) if remote is None else remote.agreed(identity)
            return entry.claim if entry is not None else None

    def sync(self) -> list[Claim]:
        """Every claim in S3, by id, refreshing the journal's cache: one listing, and a GET
        only of claims that changed. In hash mode, the journal."""
        with self._state() as (j, remote):
            if remote is None:
                return [e.claim for _, e in sorted(j.claims.items())]
            view, _ = remote.scan()
            return [e.claim for _, e in sorted(view.items())]

    def verify(self, exported: Mapping[int, str],
               pending: Collection[str] = ()) -> list[Problem]:
        """Check exported LUNs (id -> digest or backstore name) and the journal against
        the registry. The exported map comes from the caller (the target backend), with
        the backstore names of desired images not exported yet (``pending``)."""
        with self._state() as (j, remote):
            cached = [e.claim for _, e in sorted(j.claims.items())]
            if remote is None:
                return check(cached, cached, {}, exported, self.hostname, source="journal",
                             pending=pending)
            registry = [e.claim for _, e in sorted(remote.scan()[0].items())]
            digests = {c.digest for c in registry
                       if c.held_by(self.hostname) or c.lun_id in exported}
            index: dict[str, int] = {}
            for d in sorted(digests):
                found = remote.store.read_index(d)
                if found is not None:
                    index[d] = found[0].lun_id
            return check(registry, cached, index, exported, self.hostname, source="S3",
                         pending=pending)

    def _update(self, identity: Identity, fn: Callable[[Claim], Claim]) -> Claim:
        with self._state() as (j, remote):
            if remote is None:
                return local.update(j, identity, fn)
            self._writable()
            return remote.update(identity, fn)

    def _writable(self) -> None:
        if self._check is not None:
            self._check.ensure()

    # Last, so that the name does not shadow the builtin in the annotations above.
    def list(self) -> list[Claim]:
        """The registry: S3 in claims mode, the journal in hash mode."""
        return self.sync()
