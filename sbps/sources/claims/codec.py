"""The JSON forms of claim objects and key-index objects, parsed at the boundary.

Owns the byte layout of ``.sbps/luns/<id>`` and ``.sbps/keys/<digest>`` (and the claim
records inside the local journal). Bodies are decoded within size and depth limits
(``sbps.core.decode``). Parsing is strict: a body that does not parse, or whose
digest is not the SHA-224 of its identity key, raises InputError naming the object and the
field, because a claim we cannot read must never be overwritten as if it were free.
Must not do I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sbps.core.decode import loads
from sbps.core.errors import InputError
from sbps.core.identity import digest as sha224
from sbps.core.model import Claim

VERSION = 1


@dataclass(frozen=True)
class IndexRecord:
    """``.sbps/keys/<digest>``: which id an identity agreed on."""

    lun_id: int
    identity_key: str
    digest: str
    created_at: float | None = None


def claim_to_dict(claim: Claim) -> dict[str, Any]:
    return {
        "version": VERSION, "lun_id": claim.lun_id, "identity_key": claim.identity_key,
        "digest": claim.digest, "pe_etag": claim.pe_etag,
        "previous_pe_etag": claim.previous_pe_etag, "holders": sorted(claim.holders),
        "created_at": claim.created_at, "updated_at": claim.updated_at,
        "released_at": claim.released_at,
    }


def _with_nonce(d: dict[str, Any]) -> bytes:
    # A fresh nonce per write makes every version's ETag unique, so an If-Match taken from
    # an old read can never match a later version that happens to have the same content.
    return json.dumps(dict(d, write_id=uuid.uuid4().hex), sort_keys=True, indent=1).encode()


def claim_to_bytes(claim: Claim) -> bytes:
    return _with_nonce(claim_to_dict(claim))


def _time(d: Mapping[str, Any], key: str, where: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(where, key, f"expected a number of seconds, got {value!r}")
    return float(value)


def _opt_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(where, key, f"expected a string, got {value!r}")
    return value


def _identity(d: Mapping[str, Any], where: str) -> tuple[str, str]:
    key, dig = d.get("identity_key"), d.get("digest")
    if not isinstance(key, str) or not key:
        raise InputError(where, "identity_key", "missing or not a string")
    if dig != sha224(key):
        raise InputError(where, "digest", f"{dig!r} is not the SHA-224 of the identity key")
    return key, dig


def _lun_id(d: Mapping[str, Any], where: str, expected: int | None) -> int:
    lun_id = d.get("lun_id")
    if isinstance(lun_id, bool) or not isinstance(lun_id, int) or lun_id < 1:
        raise InputError(where, "lun_id", f"expected a positive integer, got {lun_id!r}")
    if expected is not None and lun_id != expected:
        raise InputError(where, "lun_id", f"{lun_id} does not match the object name")
    return lun_id


def claim_from_dict(d: Any, where: str, lun_id: int | None = None) -> Claim:
    """A claim record; ``lun_id`` is the id its object name says, checked against the body."""
    if not isinstance(d, Mapping):
        raise InputError(where, "body", "expected a JSON object")
    holders = d.get("holders", [])
    if not isinstance(holders, list) or not all(isinstance(h, str) and h for h in holders):
        raise InputError(where, "holders", f"expected a list of host names, got {holders!r}")
    key, dig = _identity(d, where)
    return Claim(
        lun_id=_lun_id(d, where, lun_id), identity_key=key, digest=dig,
        holders=frozenset(holders), pe_etag=_opt_str(d, "pe_etag", where),
        released_at=_time(d, "released_at", where), created_at=_time(d, "created_at", where),
        updated_at=_time(d, "updated_at", where),
        previous_pe_etag=_opt_str(d, "previous_pe_etag", where))


def _load(body: bytes, where: str) -> Any:
    # A claim is about 400 bytes; DecodeError is an InputError naming the object.
    return loads(body, "claim", where, max_bytes=1 << 20)


def claim_from_bytes(body: bytes, where: str, lun_id: int | None = None) -> Claim:
    return claim_from_dict(_load(body, where), where, lun_id)


def index_to_bytes(rec: IndexRecord) -> bytes:
    return _with_nonce({"version": VERSION, "lun_id": rec.lun_id,
                        "identity_key": rec.identity_key, "digest": rec.digest,
                        "created_at": rec.created_at})


def index_from_bytes(body: bytes, where: str, digest: str | None = None) -> IndexRecord:
    d = _load(body, where)
    if not isinstance(d, Mapping):
        raise InputError(where, "body", "expected a JSON object")
    key, dig = _identity(d, where)
    if digest is not None and dig != digest:
        raise InputError(where, "digest", f"{dig} does not match the object name")
    return IndexRecord(_lun_id(d, where, None), key, dig, _time(d, "created_at", where))
