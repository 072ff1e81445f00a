"""Tolerant parsing of IMS image records and image manifests into sbps.core.model types.

Owns the boundary between JSON and typed records. Every function returns either a typed
value or a ``Problem(obj, field, reason, code)`` and never raises for bad input, whatever
its shape. Known harmless variants (metadata as a list of ``{key, value}`` pairs, scalar
metadata values, ``created`` as epoch seconds or other date formats, a missing link etag)
are accepted, normalised and reported as warnings: Problems appended to the ``warnings``
list the caller passes. Must not do I/O or decide what to project.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sbps.core.decode import DecodeError, loads
from sbps.core.model import Arch, Artifact, ArtifactType, ImageRecord, Manifest, Problem, S3Url
from sbps.sources.s3 import parse_url

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ETAG = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                 "%a %b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%S %Z")
MAX_NAME = 255


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _printable(text: str) -> bool:
    return all(c.isprintable() for c in text)


def parse_created(value: Any) -> tuple[datetime | None, str]:
    """A ``created`` value as an aware UTC datetime, and a note when it was not ISO 8601.

    Accepts ISO 8601 (with or without ``Z``, an offset or a fraction), epoch seconds (or
    milliseconds) as a number or string, ``%Y-%m-%d %H:%M:%S`` and similar, RFC 2822.
    A naive time is taken as UTC. Unreadable values give ``(None, note)``.
    """
    if value is None:
        return None, ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"created has type {_type(value)}; ignored"
    if isinstance(value, str):
        text = value.strip()
        try:
            return _utc(datetime.fromisoformat(text)), ""
        except ValueError:
            pass
        if len(text) == 14 and text.isdigit():  # %Y%m%d%H%M%S, not epoch milliseconds
            try:
                return (_utc(datetime.strptime(text, "%Y%m%d%H%M%S")),
                        f"created {value!r} normalised")
            except ValueError:
                pass
        try:
            return _epoch(float(text)), f"created {value!r} is epoch time; normalised"
        except (ValueError, OverflowError, OSError):
            pass
        for fmt in _DATE_FORMATS:
            try:
                return _utc(datetime.strptime(text, fmt)), f"created {value!r} normalised"
            except ValueError:
                continue
        try:
            return _utc(parsedate_to_datetime(text)), f"created {value!r} normalised"
        except (TypeError, ValueError, IndexError):
            return None, f"created {value[:64]!r} is not a date; ignored"
    try:
        return _epoch(float(value)), f"created {value!r} is epoch time; normalised"
    except (ValueError, OverflowError, OSError):
        return None, f"created {value!r} is out of range; ignored"


def _epoch(seconds: float) -> datetime:
    if seconds != seconds:  # NaN
        raise ValueError("NaN")
    if abs(seconds) > 1e11:  # milliseconds since the epoch
        seconds /= 1000.0
    return datetime.fromtimestamp(seconds, UTC)


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_metadata(obj: str, raw: Any, warnings: list[Problem]) -> dict[str, str] | Problem:
    """A flat string map from a map, or from a list of ``{key, value}`` pairs (IMS bug)."""
    items: list[tuple[Any, Any]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = []
        for n, pair in enumerate(raw):
            if not isinstance(pair, dict) or "key" not in pair:
                return Problem(obj, f"metadata[{n}]", f"expected {{key, value}}, got "
                               f"{_type(pair)}", "wrong_type")
            items.append((pair["key"], pair.get("value")))
        warnings.append(Problem(obj, "metadata", "stored as a list of {key, value} pairs; "
                                "normalised to a map", "metadata_list"))
    else:
        return Problem(obj, "metadata", f"expected a map, got {_type(raw)}", "wrong_type")
    out: dict[str, str] = {}
    for key, value in items:
        if not isinstance(key, str):
            return Problem(obj, "metadata", f"key of type {_type(key)}", "wrong_type")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = str(value)
        else:
            warnings.append(Problem(obj, f"metadata.{key}", f"value of type {_type(value)} "
                                    "ignored", "metadata_value"))
            continue
        if not isinstance(value, str):
            warnings.append(Problem(obj, f"metadata.{key}", f"{_type(value)} value "
                                    f"normalised to {text!r}", "metadata_value"))
        out[key] = text
    return out


def record_id(raw: Any, index: int) -> str | Problem:
    """The id of a record, validated; a Problem names the record by its list position."""
    where = f"record[{index}]"
    if not isinstance(raw, dict):
        return Problem(where, "record", f"expected an object, got {_type(raw)}", "wrong_type")
    ims_id = raw.get("id")
    if not isinstance(ims_id, str):
        return Problem(where, "id", f"expected a string, got {_type(ims_id)}", "wrong_type")
    if not _SAFE_ID.match(ims_id):
        return Problem(where, "id", f"{ims_id[:80]!r} is not a safe id", "unsafe_id")
    return ims_id


def record_metadata(raw: dict[str, Any], ims_id: str,
                    warnings: list[Problem]) -> dict[str, str] | None | Problem:
    """The metadata map, or None when the record has none at all (missing or null)."""
    if raw.get("metadata") is None:
        return None
    return parse_metadata(ims_id, raw["metadata"], warnings)


def parse_record(raw: Any, index: int = 0,
                 warnings: list[Problem] | None = None) -> ImageRecord | Problem:
    """One IMS image record. ``link`` may be absent (``manifest`` is then None): the
    catalog decides whether that is a problem (it is for a rootfs image)."""
    notes: list[Problem] = [] if warnings is None else warnings
    ims_id = record_id(raw, index)
    if isinstance(ims_id, Problem):
        return ims_id
    metadata = record_metadata(raw, ims_id, notes)
    if isinstance(metadata, Problem):
        return metadata
    name = raw.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        return Problem(ims_id, "name", f"expected a string, got {_type(name)}", "wrong_type")
    if len(name) > MAX_NAME or not _printable(name):
        return Problem(ims_id, "name", "longer than 255 characters or has control "
                       "characters", "unsafe_name")
    arch_raw = raw.get("arch")
    if arch_raw is None:
        arch = Arch.X86_64  # IMS's documented default for records made before arch existed
    elif not isinstance(arch_raw, str):
        return Problem(ims_id, "arch", f"expected a string, got {_type(arch_raw)}",
                       "wrong_type")
    else:
        try:
            arch = Arch(arch_raw)
        except ValueError:
            return Problem(ims_id, "arch", f"unknown architecture {arch_raw[:40]!r}",
                           "unknown_arch")
    created, note = parse_created(raw.get("created"))
    if note:
        notes.append(Problem(ims_id, "created", note, "created_format"))
    manifest: S3Url | None = None
    etag: str | None = None
    link = raw.get("link")
    if link is not None:
        parsed = _link(ims_id, "link", link)
        if isinstance(parsed, Problem):
            return parsed
        manifest, etag = parsed
        if etag is None:
            notes.append(Problem(ims_id, "link.etag", "missing; the manifest is re-read on "
                                 "every slow refresh", "no_link_etag"))
    return ImageRecord(ims_id=ims_id, name=name or ims_id, created=created, arch=arch,
                       manifest=manifest, manifest_etag=etag, metadata=metadata or {},
                       has_metadata=metadata is not None)


def _link(obj: str, where: str, link: Any) -> tuple[S3Url, str | None] | Problem:
    if not isinstance(link, dict):
        return Problem(obj, where, f"expected an object, got {_type(link)}", "wrong_type")
    kind = link.get("type", "s3")
    if kind is not None and kind != "s3":
        return Problem(obj, f"{where}.type", f"unsupported link type {str(kind)[:40]!r}",
                       "unsupported_link")
    path = link.get("path")
    if not isinstance(path, str):
        return Problem(obj, f"{where}.path", f"expected a string, got {_type(path)}",
                       "no_link" if path is None else "wrong_type")
    try:
        url = parse_url(path)
    except ValueError as exc:
        return Problem(obj, f"{where}.path", str(exc)[:200], "unsafe_key")
    etag = link.get("etag")
    if etag is None:
        return url, None
    if not isinstance(etag, str):
        return Problem(obj, f"{where}.etag", f"expected a string, got {_type(etag)}",
                       "wrong_type")
    etag = etag.strip().strip('"')
    if not _ETAG.match(etag):
        return Problem(obj, f"{where}.etag", f"{etag[:80]!r} is not an S3 ETag", "bad_etag")
    return url, etag


def parse_manifest(obj: str, body: bytes | str, warnings: list[Problem] | None = None, *,
                   last_rootfs: bool = False) -> Manifest | Problem:
    """An image manifest with exactly one usable rootfs artifact (``obj`` is the image id).

    Other artifacts are kept when they parse and dropped with a warning when not: only the
    rootfs matters to projection. Which rootfs artifact: the first (the image is rejected
    when it has no etag), or with ``last_rootfs`` the field agent's choice: the last one
    whose link has both a ``path`` and an ``etag`` key (``marshal/bin/agent.py``,
    ``main()``: its loop over ``manifest["artifacts"]`` overwrites the path and etag at
    each such artifact), rejected when that one's etag is null.
    """
    notes: list[Problem] = [] if warnings is None else warnings
    try:
        doc = loads(body, "manifest", obj, expect=dict)
    except DecodeError as exc:  # too large, too deep, not UTF-8, not JSON, not an object
        return Problem(obj, "manifest", exc.reason, exc.code)
    version = doc.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str):
        notes.append(Problem(obj, "manifest.version", f"{_type(version)} ignored",
                             "manifest_version"))
        version = ""
    created, note = parse_created(doc.get("created"))
    if note:
        notes.append(Problem(obj, "manifest.created", note, "created_format"))
    raw_artifacts = doc.get("artifacts")
    if not isinstance(raw_artifacts, list):
        return Problem(obj, "manifest.artifacts", f"expected a list, got "
                       f"{_type(raw_artifacts)}", "no_rootfs" if raw_artifacts is None
                       else "wrong_type")
    artifacts: list[Artifact] = []
    rootfs_seen = False
    chosen = _field_rootfs(raw_artifacts) if last_rootfs else None
    for n, raw in enumerate(raw_artifacts):
        where = f"manifest.artifacts[{n}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        is_rootfs = kind == ArtifactType.ROOTFS.value
        if is_rootfs and chosen is not None and n != chosen:
            notes.append(Problem(obj, where, f"another rootfs artifact; artifacts[{chosen}] "
                                 "(the last with a path and an etag) is used",
                                 "extra_rootfs"))
            continue
        if is_rootfs and rootfs_seen:
            notes.append(Problem(obj, where, "a second rootfs artifact; the first is used",
                                 "extra_rootfs"))
            continue
        parsed = _artifact(obj, where, raw, strict=is_rootfs)
        if isinstance(parsed, Problem):
            if is_rootfs:
                return parsed
            notes.append(Problem(obj, where, f"ignored: {parsed.field}: {parsed.reason}",
                                 "artifact_ignored"))
            continue
        rootfs_seen = rootfs_seen or is_rootfs
        artifacts.append(parsed)
    if not rootfs_seen:
        return Problem(obj, "manifest.artifacts", f"no {ArtifactType.ROOTFS.value} artifact",
                       "no_rootfs")
    return Manifest(version=version, created=created, artifacts=tuple(artifacts))


def _field_rootfs(raw_artifacts: list[Any]) -> int | None:
    """The index of the field agent's rootfs artifact: the last of that type whose link is
    an object with both keys ``path`` and ``etag`` (their values are checked later)."""
    chosen = None
    for n, raw in enumerate(raw_artifacts):
        if not isinstance(raw, dict) or raw.get("type") != ArtifactType.ROOTFS.value:
            continue
        link = raw.get("link")
        if isinstance(link, dict) and "path" in link and "etag" in link:
            chosen = n
    return chosen


def _artifact(obj: str, where: str, raw: Any, *, strict: bool) -> Artifact | Problem:
    if not isinstance(raw, dict):
        return Problem(obj, where, f"expected an object, got {_type(raw)}", "wrong_type")
    kind = raw.get("type")
    if not isinstance(kind, str):
        return Problem(obj, f"{where}.type", f"expected a string, got {_type(kind)}",
                       "wrong_type")
    link = raw.get("link")
    if link is None:
        return Problem(obj, f"{where}.link", "missing", "no_link")
    parsed = _link(obj, f"{where}.link", link)
    if isinstance(parsed, Problem):
        return parsed
    url, etag = parsed
    if etag is None and strict:
        # The field agent crashed on this; here only this image is skipped.
        return Problem(obj, f"{where}.link.etag", "missing or null", "no_etag")
    md5 = raw.get("md5")
    if md5 is not None and not (isinstance(md5, str) and _MD5.match(md5)):
        md5 = None
    return Artifact(url=url, etag=etag, md5=md5.lower() if md5 else None, type=kind)
