"""Proof that the claim bucket keeps the promises the LUN id agreement rests on.

Owns the probe the marshal runs before its first claim write (``lun_allocation = "claims"``):
under ``<prefix>/probe/`` it creates an object with If-None-Match ``*`` (must succeed),
creates it again (must be refused with 412), replaces it with a wrong If-Match (must be
refused), reads it back (read-after-write: the first body, the first ETag) and lists the
prefix (the object must be listed). A store that ignores conditional headers (a proxy that
strips them, a gateway that does not implement them) would let two workers both "win" an
id; with such a store the marshal writes no claim at all.

``StoreCheck`` keeps the verdict: ``ensure()`` probes once and then returns at once while
the store passed; a refusal is remembered and re-probed after ``recheck`` seconds, so a
fixed gateway is trusted again without a restart. A temporary S3 error leaves the verdict
unknown and is raised, so the caller retries. Must not claim, release or read claims.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sbps.core.errors import SbpsError, UpstreamPermanentError
from sbps.core.model import S3Url
from sbps.sources.s3 import S3, PreconditionFailed

log = logging.getLogger(__name__)
SETTING = 'target.lun_allocation = "hash"'
_WRONG_ETAG = "00000000000000000000000000000000"


class Verdict(enum.Enum):
    UNKNOWN = "unknown"
    OK = "ok"
    REFUSED = "refused"


class StoreUnsafe(UpstreamPermanentError):
    """The claim bucket does not honour conditional writes: no claim may be written."""

    code = "s3_conditional_writes_ignored"


_SHORT = ("s3://{bucket} does not honour conditional writes: no LUN id is claimed (the "
          "reason and the setting to change are in /readyz and in the error logged once)")


@dataclass(frozen=True)
class ProbeState:
    verdict: Verdict = Verdict.UNKNOWN
    reason: str = ""
    checked_at: float | None = None


def probe(s3: S3, bucket: str, prefix: str, hostname: str) -> str:
    """Run the checks once; '' if the store passed, else what it failed. Raises the
    temporary errors of S3 (the verdict is then unknown). Removes its object afterwards."""
    url = S3Url(bucket, f"{prefix.strip('/')}/probe/{hostname}-{uuid.uuid4().hex[:12]}")
    first = f"sbps probe {url.key} first\n".encode()
    try:
        etag = s3.put_bytes(url, first, if_none_match=True)
        try:
            s3.put_bytes(url, b"sbps probe: this write must be refused\n", if_none_match=True)
            return (f"a second PUT of {url} with If-None-Match: * was accepted over the "
                    "existing object (it must be refused with 412)")
        except PreconditionFailed:
            pass
        try:
            s3.put_bytes(url, b"sbps probe: this write must be refused\n", if_match=_WRONG_ETAG)
            return f"a PUT of {url} with a wrong If-Match was accepted (it must be refused)"
        except PreconditionFailed:
            pass
        body, got = s3.get_bytes(url, max_bytes=4096)
        if body != first or got != etag:
            return (f"reading {url} right after writing it gave another version "
                    f"(ETag {got}, written {etag}): no read-after-write consistency")
        if url.key not in {i.url.key for i in s3.list(bucket, url.key)}:
            return f"listing {prefix}/probe/ right after writing {url} does not show it"
        return ""
    finally:
        try:
            s3.delete(url)
        except SbpsError as exc:
            log.warning("cannot remove the S3 probe object %s: %s", url, exc)


class StoreCheck:
    """The verdict on one bucket, probed before the first claim write. Thread-safe."""

    def __init__(self, s3: S3, bucket: str, prefix: str, hostname: str, *,
                 recheck: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._s3, self._bucket, self._prefix, self._host = s3, bucket, prefix, hostname
        self._recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self.state = ProbeState()
        """Replaced, never mutated: readers (metrics, status) need no lock."""

    def ensure(self) -> None:
        """Return if the store is trusted; raise StoreUnsafe if it is not (probing when
        never probed, or when a refusal is older than ``recheck``)."""
        with self._lock:
            st = self.state
            if st.verdict is Verdict.OK:
                return
            now = self._clock()
            if (st.verdict is Verdict.REFUSED and st.checked_at is not None
                    and now - st.checked_at < self._recheck):
                raise StoreUnsafe(_SHORT.format(bucket=self._bucket))
            failed = probe(self._s3, self._bucket, self._prefix, self._host)
            if not failed:
                if st.verdict is Verdict.REFUSED:
                    log.warning("s3://%s honours conditional writes again: claiming LUN ids",
                                self._bucket)
                self.state = ProbeState(Verdict.OK, "", now)
                return
            reason = (f"s3://{self._bucket} does not honour conditional writes: {failed}; "
                      "LUN ids cannot be agreed safely, so this worker claims none (it keeps "
                      "serving what it exports). Fix the S3 gateway (or a proxy that strips "
                      "If-Match/If-None-Match), or set " + SETTING + " (ids from the hash, "
                      "agreement not guaranteed)")
            if st.verdict is not Verdict.REFUSED:
                log.error("%s", reason, extra={"action": "claim", "object": self._bucket})
            self.state = ProbeState(Verdict.REFUSED, reason, now)
            # The whole story is logged once above and kept in the state (/readyz); each
            # refused claim says only this.
            raise StoreUnsafe(_SHORT.format(bucket=self._bucket))
