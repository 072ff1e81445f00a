"""Staging: verified copies of S3 objects in the local cache.

Owns downloads, verification (size, MD5, multipart ETag), the atomic write protocol, the
cache budget and eviction. Must not touch the target or decide what is desired.

The reconciler uses ``Stager`` and the error classes re-exported here; the submodules are
internal: ``service`` (API and policy), ``download`` (ranged GETs into a partial file),
``hashing`` (verification plan, out-of-order hashing), ``verify`` (content checks),
``records`` (verification records, progress logs), ``cache`` (space, eviction,
quarantine), ``check`` (start-up check and re-hash), ``throttle`` (bandwidth), ``layout``
(file names from digests), ``status``.
"""

from sbps.sources.stager.errors import CacheFull, NoSpace, StageConflict
from sbps.sources.stager.layout import check_digest
from sbps.sources.stager.service import DEFAULT_REHASH_RATE, Stager
from sbps.sources.stager.status import InFlight, StageStatus

__all__ = ["DEFAULT_REHASH_RATE", "CacheFull", "InFlight", "NoSpace", "StageConflict",
           "StageStatus", "Stager", "check_digest"]
