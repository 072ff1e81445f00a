"""LUN id arithmetic: the first candidate of a digest, the probe order, the quarantine rule.

Owns the pure functions every worker must compute identically, so that workers walking the
same registry reach the same ids. Must not do I/O or read the clock (the time is passed in).

Probing is double hashing: the start comes from the first 64 bits of the digest, the step
from the next 64 bits, made coprime with the range size so that the sequence visits every
id exactly once. Double hashing rather than linear probing because a shrunk range fills in
clusters under linear probing, and each probe of a taken id can cost an S3 read.
"""

from __future__ import annotations

import math
import re

from sbps.core.model import Claim

_DIGEST_RE = re.compile(r"^[0-9a-f]{32,}$")


def _check(digest: str, lun_min: int, lun_max: int) -> int:
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"digest {digest!r} is not a lowercase hex digest of 32+ digits")
    if lun_min < 1 or lun_max < lun_min:
        raise ValueError(f"LUN range {lun_min}..{lun_max} is empty or includes LUN 0")
    return lun_max - lun_min + 1


def first_candidate(digest: str, lun_min: int, lun_max: int) -> int:
    """The id a digest hashes to in ``lun_min..lun_max``."""
    size = _check(digest, lun_min, lun_max)
    return lun_min + int(digest[:16], 16) % size


def probe_step(digest: str, size: int) -> int:
    """A step in ``1..size-1`` coprime with ``size`` (1 for a range of one or two ids)."""
    if size <= 2:
        return 1
    step = 1 + int(digest[16:32], 16) % (size - 1)
    # 1 is coprime with every size, so walking upwards (wrapping to 1) always ends.
    while math.gcd(step, size) != 1:
        step = step + 1 if step + 1 < size else 1
    return step


def probe_order(digest: str, lun_min: int, lun_max: int) -> list[int]:
    """Every id of the range, each exactly once, in the order a digest tries them."""
    size = _check(digest, lun_min, lun_max)
    start = int(digest[:16], 16) % size
    step = probe_step(digest, size)
    return [lun_min + (start + k * step) % size for k in range(size)]


def preferred_order(digest: str, lun_min: int, lun_max: int,
                    preferred: int | None = None) -> list[int]:
    """The probe order, with ``preferred`` (an id the identity is already exported at,
    for instance by the field agent) tried first when it lies in the range."""
    order = probe_order(digest, lun_min, lun_max)
    if preferred is None or not lun_min <= preferred <= lun_max:
        return order
    return [preferred] + [i for i in order if i != preferred]


def is_free(claim: Claim, now: float, quarantine: float) -> bool:
    """Whether another identity may take the claim's id: no holder, released, rested."""
    if claim.holders or claim.released_at is None:
        return False
    return now - claim.released_at >= quarantine
