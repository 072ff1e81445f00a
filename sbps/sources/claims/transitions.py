"""How one claim record changes: join, leave, abandon, clear, record or promote a PE etag.

Owns the pure state transitions shared by claims mode and hash mode. Each returns the very
same object when nothing changes, so callers can skip a write (a steady pass writes
nothing), and stamps ``updated_at`` otherwise. Must not do I/O or read the clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sbps.core.model import Claim
from sbps.sources.claims.failures import ClaimHeld


def touch(old: Claim, now: float, **changes: Any) -> Claim:
    new = dataclasses.replace(old, **changes)
    return old if new == old else dataclasses.replace(new, updated_at=now)


def joined(c: Claim, host: str, pe_etag: str | None, now: float) -> Claim:
    """``host`` holds the claim; a re-joined released claim leaves quarantine."""
    return touch(c, now, holders=c.holders | {host}, released_at=None,
                 pe_etag=c.pe_etag or pe_etag)


def left(c: Claim, host: str, now: float) -> Claim:
    """``host`` no longer holds it; the last holder out starts the quarantine."""
    holders = c.holders - {host}
    first_empty = not holders and c.released_at is None
    return touch(c, now, holders=holders, released_at=now if first_empty else c.released_at)


def abandoned(c: Claim, host: str, now: float) -> Claim:
    """Left by a worker whose identity agreed on another id: never exported, so the id
    needs no quarantine once empty (``released_at`` 0)."""
    holders = c.holders - {host}
    return touch(c, now, holders=holders, released_at=c.released_at if holders else 0.0)


def cleared(c: Claim, now: float, *, force: bool, orphan: bool) -> Claim:
    """Every holder removed by an admin; refused while held, unless forced or orphaned."""
    if c.holders and not (force or orphan):
        raise ClaimHeld(f"LUN {c.lun_id} ({c.identity_key}) is held by "
                        f"{', '.join(sorted(c.holders))}; use --force to release it")
    released = c.released_at if not c.holders and c.released_at is not None else now
    return touch(c, now, holders=frozenset(), released_at=released)


def promoted(c: Claim, etag: str, now: float) -> Claim:
    if c.pe_etag == etag:
        return c
    return touch(c, now, pe_etag=etag, previous_pe_etag=c.pe_etag)
