"""Errors of the stager that have no general class in ``sbps.core.errors``.

Verification failures use ``sbps.core.errors.VerificationError`` with a code (``etag_mismatch``,
``size_mismatch``, ``md5_mismatch``, ``unverifiable``); these add the cache's own outcomes.
"""

from __future__ import annotations

from sbps.core.errors import PermanentError, TemporaryError


class CacheFull(PermanentError):
    """The image does not fit in ``stage.max_bytes`` even after evicting every file that no
    exported or retiring LUN uses. Permanent until the budget or the set in use changes."""

    code = "cache_full"

    def __init__(self, message: str, *, needed: int, free: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.free = free


class NoSpace(TemporaryError):
    """The file system under the cache directory is full (ENOSPC)."""

    code = "no_space"


class StageConflict(PermanentError):
    """A new version of an object has the digest of a file that is still exported (a PE
    image in legacy identity mode re-uploaded under the same name): replacing the file would
    change a LUN's content under its initiators, so it waits until the LUN is gone."""

    code = "replaced_in_use"
