"""LUN id claims: the shared registry in S3, its local journal, and the quarantine of ids.

Owns the agreement on LUN ids between workers (see ``registry`` for the protocol) and
``lun_allocation = "hash"`` (``local``). Must not touch the target.

Modules: ``ids`` (hashing, probe order, quarantine: pure), ``codec`` (object bodies),
``journal`` (local cache file), ``store`` (the S3 objects), ``local`` (hash mode),
``verify`` (consistency checks: pure), ``registry`` (the API the reconciler calls).
"""

from sbps.sources.claims.failures import (
    ClaimContention,
    ClaimHeld,
    ClaimMissing,
    RangeFull,
)
from sbps.sources.claims.ids import (
    first_candidate,
    is_free,
    preferred_order,
    probe_order,
)
from sbps.sources.claims.registry import Allocation, ClaimRegistry, Settings, journal_path

__all__ = [
    "Allocation", "ClaimContention", "ClaimHeld", "ClaimMissing", "ClaimRegistry",
    "RangeFull", "Settings", "first_candidate", "is_free", "journal_path",
    "preferred_order", "probe_order",
]
