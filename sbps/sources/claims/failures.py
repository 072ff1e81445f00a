"""The errors the claim registry raises, each naming the LUN id or identity concerned.

Owns these classes only. Must not import anything of sbps but ``errors``.
"""

from __future__ import annotations

from sbps.core.errors import PermanentError, TemporaryError


class RangeFull(PermanentError):
    """Every id of the range is held or still in quarantine."""

    code = "lun_range_full"


class ClaimHeld(PermanentError):
    """A release of an id was refused because workers still hold it."""

    code = "claim_held"


class ClaimMissing(PermanentError):
    """No claim exists for the id or identity asked about."""

    code = "claim_missing"


class ClaimContention(TemporaryError):
    """Conditional writes kept losing to other workers; retry on the next pass."""

    code = "claim_contention"
