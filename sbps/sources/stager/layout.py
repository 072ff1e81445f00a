"""Names inside the cache directory, derived from digests only.

Owns the mapping digest -> file names (final file, verification record, partial download,
progress sidecar, quarantine) and the validation that keeps every name inside the cache
directory. Must not do I/O beyond building paths.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sbps.core.errors import InputError

_DIGEST_RE = re.compile(r"^[0-9a-f]{56}$")
FINAL_SUFFIX = ".squashfs"
RECORD_SUFFIX = ".record"
PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress"
QUARANTINE = "quarantine"


def check_digest(digest: str) -> str:
    """A SHA-224 hex digest (56 lowercase hex digits), or InputError: nothing else may name a
    cache file, so no key, id or name can reach the file system through the stager."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InputError(repr(digest)[:80], "digest", "not a SHA-224 hex digest",
                         code="bad_digest")
    return digest


def is_digest(text: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(text))


@dataclass(frozen=True)
class Layout:
    """File names of one cache directory. ``root`` is an absolute, resolved path."""

    root: str

    @classmethod
    def at(cls, cache_dir: str) -> Layout:
        return cls(os.path.realpath(cache_dir))

    def final(self, digest: str) -> str:
        return os.path.join(self.root, check_digest(digest) + FINAL_SUFFIX)

    def record(self, digest: str) -> str:
        return os.path.join(self.root, check_digest(digest) + RECORD_SUFFIX)

    def partial(self, digest: str) -> str:
        # Hidden, so a listing of *.squashfs never shows an incomplete file.
        return os.path.join(self.root, "." + check_digest(digest) + PARTIAL_SUFFIX)

    def progress(self, digest: str) -> str:
        return os.path.join(self.root, "." + check_digest(digest) + PROGRESS_SUFFIX)

    @property
    def quarantine_dir(self) -> str:
        return os.path.join(self.root, QUARANTINE)

    def quarantined(self, digest: str, stamp: int) -> str:
        return os.path.join(self.quarantine_dir,
                            f"{check_digest(digest)}.{int(stamp)}{FINAL_SUFFIX}")

    def classify(self, name: str) -> tuple[str, str] | None:
        """``(kind, digest)`` of a directory entry (kind: final, record, partial,
        progress), or None for anything the stager did not write."""
        for kind, prefix, suffix in (("final", "", FINAL_SUFFIX),
                                     ("record", "", RECORD_SUFFIX),
                                     ("partial", ".", PARTIAL_SUFFIX),
                                     ("progress", ".", PROGRESS_SUFFIX)):
            if name.startswith(prefix) and name.endswith(suffix):
                digest = name[len(prefix):len(name) - len(suffix)]
                if is_digest(digest):
                    return kind, digest
        return None

    def digest_of(self, path: str) -> str | None:
        """The digest whose verified file backs a backstore at ``path``, or None. By file
        name: a backstore keeps the path it was made with, which may name the cache
        directory another way (unresolved, or before it moved)."""
        found = self.classify(os.path.basename(path))
        return found[1] if found is not None and found[0] == "final" else None


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
