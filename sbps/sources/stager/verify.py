"""Comparing what was downloaded with what S3 and the manifest promise.

Owns the content checks: size, ETag (single-part MD5 or multipart MD5 of part MD5s) and the
manifest's MD5. Pure; raises VerificationError with a code naming the failed check. Must not
apply the strict / best-effort policy (the service does) or touch files.
"""

from __future__ import annotations

from sbps.core.errors import VerificationError
from sbps.core.model import DesiredImage
from sbps.sources.stager.download import DownloadOutcome
from sbps.sources.stager.hashing import VerifyPlan, multipart_etag


def compare(plan: VerifyPlan, outcome: DownloadOutcome, image: DesiredImage) -> list[str]:
    """The checks that passed (``size`` always, then ``etag`` and ``md5`` when they could be
    made); the first that fails raises."""
    what = f"{image.source.url} (image {image.name})"
    if outcome.size != plan.size:
        raise VerificationError(f"{what}: staged {outcome.size} bytes, S3 says {plan.size}",
                                code="size_mismatch")
    checks = ["size"]
    if not plan.unverifiable:
        computed = multipart_etag(list(outcome.part_digests)) if plan.parts else outcome.md5
        if computed != plan.etag.lower():
            raise VerificationError(f"{what}: content has ETag {computed}, S3 says "
                                    f"{plan.etag}", code="etag_mismatch")
        checks.append("etag")
    if image.md5:
        if outcome.md5 != image.md5.strip().lower():
            raise VerificationError(f"{what}: content MD5 {outcome.md5}, manifest says "
                                    f"{image.md5}", code="md5_mismatch")
        checks.append("md5")
    return checks
