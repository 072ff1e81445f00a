"""The local claims journal: a cache of claim and key-index records in ``reconcile.state_dir``.

Owns the file ``claims.json`` and its atomic replacement (temporary file, fsync, rename,
fsync of the directory), so a crash leaves either the old or the new journal, never half.
In ``claims`` mode the journal is only a cache (S3 is the truth; a lost or unreadable
journal is rebuilt from S3 and the same ids come back). In ``hash`` mode it is the only
record of this worker's ids. Not thread-safe: the registry serialises access.
Must not talk to S3.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.core.decode import loads
from sbps.core.errors import InputError
from sbps.core.model import Claim
from sbps.sources.claims.codec import claim_from_dict, claim_to_dict

log = logging.getLogger(__name__)
FILENAME = "claims.json"
VERSION = 1


@dataclass(frozen=True)
class Entry:
    """A claim as last read or written, with the ETag of that S3 object version."""

    claim: Claim
    etag: str | None = None


@dataclass(frozen=True)
class IndexEntry:
    lun_id: int
    etag: str | None = None


class Journal:
    """Claims by id and the key index by digest; ``path`` None keeps it in memory only."""

    def __init__(self, path: Path | None, bucket: str) -> None:
        self.path = path
        self.bucket = bucket
        self.claims: dict[int, Entry] = {}
        self.index: dict[str, IndexEntry] = {}
        self._dirty = False

    @classmethod
    def load(cls, path: Path | None, bucket: str) -> Journal:
        """The journal at ``path``; empty if absent, unreadable or for another bucket."""
        journal = cls(path, bucket)
        if path is None or not path.exists():
            return journal
        try:
            data = loads(path.read_bytes(), "state", str(path), max_bytes=64 * 2**20,
                         expect=dict)
            if data.get("version") != VERSION or data.get("bucket") != bucket:
                log.warning("claims journal is for another bucket or version; ignoring it",
                            extra={"path": str(path), "bucket": data.get("bucket")})
                return journal
            for rec in data.get("claims", []):
                claim = claim_from_dict(rec, f"{path} claim")
                journal.claims[claim.lun_id] = Entry(claim, rec.get("etag"))
            for dig, rec in data.get("index", {}).items():
                journal.index[str(dig)] = IndexEntry(int(rec["lun_id"]), rec.get("etag"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, InputError) as exc:
            # InputError includes DecodeError: too large, too deep, not JSON, not an object
            log.warning("claims journal unreadable (%s); starting empty", exc,
                        extra={"path": str(path)})
            return cls(path, bucket)
        return journal

    def by_digest(self, digest: str) -> Entry | None:
        """The entry for a digest: through the index first, else by scanning the claims."""
        idx = self.index.get(digest)
        if idx is not None:
            entry = self.claims.get(idx.lun_id)
            if entry is not None and entry.claim.digest == digest:
                return entry
        return next((e for e in self.claims.values() if e.claim.digest == digest), None)

    def put(self, entry: Entry) -> None:
        if self.claims.get(entry.claim.lun_id) != entry:
            self.claims[entry.claim.lun_id] = entry
            self._dirty = True

    def drop(self, lun_id: int) -> None:
        if self.claims.pop(lun_id, None) is not None:
            self._dirty = True

    def set_index(self, digest: str, entry: IndexEntry) -> None:
        if self.index.get(digest) != entry:
            self.index[digest] = entry
            self._dirty = True

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION, "bucket": self.bucket,
            "claims": [dict(claim_to_dict(e.claim), etag=e.etag)
                       for _, e in sorted(self.claims.items())],
            "index": {d: {"lun_id": i.lun_id, "etag": i.etag}
                      for d, i in sorted(self.index.items())},
        }

    def save(self) -> None:
        """Write the journal atomically if it changed since it was loaded or last saved."""
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(self.to_json(), indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._dirty = False
