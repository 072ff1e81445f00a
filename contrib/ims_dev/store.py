"""Record store and validation helpers of the development IMS fake (contrib/ims_dev_server.py).

Owns the JSON state file (atomic replace), the fault/request bookkeeping and the checks of
IMS v3 image-record shapes. Must not serve HTTP routes (the server script does) and must not
"fix" raw records: loaded records are kept and returned exactly as given.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web


def now() -> str:
    return datetime.now(UTC).isoformat()


def problem(status: int, title: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


class Store:
    """Live and soft-deleted records by id, written to one JSON file after each change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.images: dict[str, Any] = {}
        self.deleted: dict[str, Any] = {}
        if path is not None and path.exists():
            state = json.loads(path.read_text(encoding="utf-8"))
            for rec in state.get("images", []):
                self.insert(rec, save=False)
            for rec in state.get("deleted", []):
                self.deleted[self.key_of(rec)] = rec

    @staticmethod
    def key_of(rec: Any) -> str:
        # Raw records may lack an id (or carry a non-string one); they stay listable.
        rid = rec.get("id") if isinstance(rec, dict) else None
        return rid if isinstance(rid, str) else f"__noid__{uuid.uuid4()}"

    def insert(self, rec: Any, *, save: bool = True) -> None:
        self.images[self.key_of(rec)] = rec
        if save:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"images": list(self.images.values()),
                           "deleted": list(self.deleted.values())}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".ims-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Dev:
    """Fault queue and request counters of the fault-injection admin endpoints."""

    def __init__(self) -> None:
        self.faults: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()


def check_link(link: Any) -> str:
    """Empty if ``link`` is acceptable as IMS's ArtifactLinkRecord (or null), else why not."""
    if link is None:
        return ""
    if not isinstance(link, dict):
        return "link must be an object"
    for field in ("path", "type"):
        if not isinstance(link.get(field), str) or not link[field]:
            return f"link.{field} is required and must be a string"
    if "etag" in link and not isinstance(link["etag"], (str, type(None))):
        return "link.etag must be a string"
    return ""


def apply_metadata(rec: dict[str, Any], change: Any) -> str:
    """Apply one metadata operation in the record's own shape; empty or a 400 reason."""
    if not isinstance(change, dict) or not isinstance(change.get("key"), str):
        return "metadata must be {operation, key, value}"
    op, key = change.get("operation"), change["key"]
    if op not in ("set", "remove"):
        return f"unknown metadata operation {op!r}: expected 'set' or 'remove'"
    if op == "set" and not isinstance(change.get("value"), str):
        return "metadata value must be a string for 'set'"
    meta = rec.get("metadata")
    if isinstance(meta, list):  # the odd list-of-pairs shape stays a list
        rest = [p for p in meta if not (isinstance(p, dict) and p.get("key") == key)]
        rec["metadata"] = rest + ([{"key": key, "value": change["value"]}] if op == "set" else [])
    else:
        meta = dict(meta) if isinstance(meta, dict) else {}
        if op == "set":
            meta[key] = change["value"]
        else:
            meta.pop(key, None)
        rec["metadata"] = meta
    return ""
