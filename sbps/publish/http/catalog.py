"""The client-facing views of the status snapshot: the image catalog and the target.

Owns the JSON shape of ``/v1/images``, ``/v1/images/{id}`` and ``/v1/target`` (described
in openapi.yaml), built from one snapshot so that equal catalogs give equal bytes and
therefore equal ETags: nothing that changes every pass (pass counters, timestamps of the
pass) goes into the catalog. Must not do I/O; the handlers serve what these return.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sbps import __version__
from sbps.core.model import WWID_PREFIX, DesiredImage, ImageState
from sbps.core.target_state import StorageObject, TargetState
from sbps.publish.http.source import Status
from sbps.reconcile.lifecycle import ImageStatus

#: The states a client sees: exported images, and those on their way out or in trouble.
LISTED = (ImageState.EXPORTED, ImageState.RETIRING, ImageState.FAILED)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def encode(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def entry(s: ImageStatus, storage: dict[str, StorageObject],
          img: DesiredImage | None = None) -> dict[str, Any]:
    """One image version as one record names it (``img``, default ``s.image``; another
    record of the same version is one of ``s.aliases``). Fields the snapshot does not
    know (an image retiring since before a restart has no catalog record) are null;
    serial and size then come from the target's backstore."""
    img = img or s.image
    so = storage.get(s.name)
    serial = img.identity.serial if img else so.serial if so else None
    size = img.source.size if img else so.size if so else None
    return {
        "key": s.name,
        "identity_key": img.identity.key if img else None,
        "ims_id": img.ims_id if img else None,
        "name": img.name if img else None,
        "kind": img.kind.value if img else None,
        "arch": img.arch.value if img and img.arch else None,
        "s3_path": str(img.source.url) if img else None,
        "etag": img.source.etag if img else None,
        "size": size,
        "serial": serial,
        "wwid": WWID_PREFIX + serial[:25] if serial else None,
        "lun_id": s.lun_id,
        "state": s.state.value,
        "since": iso(s.since),
        "reason": s.reason or None,
    }


def portals(target: TargetState | None) -> list[str]:
    return sorted(str(p) for p in target.portals) if target else []


#: ``keep(tenant)``: whether the requester may see an image of that tenant (None: all).
Keep = Callable[[str | None], bool]


def records(s: ImageStatus) -> tuple[DesiredImage | None, ...]:
    """Every record of one image version: one entry each, so that no record can hide or
    rename another's (two IMS ids on one rootfs share the LUN, not the entry)."""
    return (s.image, *s.aliases)


def entries(status: Status, keep: Keep | None = None) -> list[dict[str, Any]]:
    storage = status.target.storage_by_name() if status.target else {}
    return [entry(s, storage, img) for s in status.images if s.state in LISTED
            for img in records(s)
            if keep is None or keep(img.tenant if img else None)]


def catalog(status: Status, match: str | None = None, keep: Keep | None = None
            ) -> dict[str, Any]:
    """The catalog; with ``match``, only the entries whose key or IMS id equals it; with
    ``keep``, only the images the requester may read (access control)."""
    items = entries(status, keep)
    if match is not None:
        items = [e for e in items if match in (e["key"], e["ims_id"])]
    return {"iqn": status.iqn, "backend": status.backend, "portals": portals(status.target),
            "images": sorted(items, key=lambda e: (e["key"], e["state"], e["ims_id"] or ""))}


_PENDING = frozenset({ImageState.DISCOVERED, ImageState.STAGING, ImageState.STAGED,
                      ImageState.FAILED})


def target(status: Status) -> dict[str, Any]:
    t = status.target
    storage = t.storage_by_name() if t else {}
    luns = []
    for lun in sorted(t.luns, key=lambda x: x.index) if t else []:
        so = storage.get(lun.storage_object)
        luns.append({"lun_id": lun.index, "key": lun.storage_object,
                     "serial": so.serial if so else None, "size": so.size if so else None,
                     "wwid": WWID_PREFIX + so.serial[:25] if so else None,
                     "readonly": so.readonly if so else None})
    return {
        "iqn": status.iqn, "backend": status.backend, "version": __version__,
        "exists": bool(t and t.exists), "tpg_enabled": bool(t and t.tpg_enabled),
        "portals": portals(t), "gate_open": status.gate_open, "serving": status.serving,
        "dns_registered": status.dns_registered, "luns": luns,
        "foreign": list(t.foreign) if t else [],
        # Desired images not exported yet: their LUN ids are rightly claimed meanwhile.
        "pending": [{"key": s.name, "state": s.state.value, "reason": s.reason}
                    for s in status.images if s.state in _PENDING],
    }
