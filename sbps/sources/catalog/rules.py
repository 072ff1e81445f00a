"""The label rule and the PE registration rule: which records and PE objects to project.

Owns two pure decisions, each in two flavours chosen by ``catalog.rules``. Label rule,
strict: a record is projected when ``metadata[catalog.label_key]`` is ``"true"`` (case and
surrounding blanks ignored); a record with no metadata at all follows ``catalog.untagged``
(skip, the default, or project). Field (the field agent's ``marshal/bin/agent.py``,
``main()``, "Rootfs Image Synchronization Logic"): the value must be exactly the string
``"true"`` (``"TRUE"``, ``" true"`` and JSON ``true`` are not), and a record without
``metadata`` is projected. ``catalog.tagging = false`` projects every record in both.

PE objects, strict: ``PE/<file>.squashfs`` directly under ``PE/``. Field (same function,
"Programming Environment Image Synchronization Logic": ``x['Key'].startswith("PE/")``):
every object under ``PE/``, nested or not, with any suffix (``.SQUASHFS``, none); only
folder markers (keys ending in ``/``) are left out, which the field could not export either.

PE registration rule (``catalog.pe = "labelled"``): a PE object ``s3://<bucket>/PE/<file>``
is projected when a *labelled* IMS record registers it, that is when the record's
``link.path`` is that object's URL, or when the record has no link and its ``name`` is
``<file>`` or ``<file>`` without its ``.squashfs`` suffix. A record whose link points into
``PE/`` is a registration only, never a rootfs image (it has no manifest).

Bucket rule: every link followed (the record's manifest, each artifact of the manifest,
PE objects) must be in ``s3.bucket`` or ``s3.allowed_buckets``; ``foreign_links`` and
``sbps.sources.s3.confine`` decide it. Must not do I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sbps.config import CatalogConfig
from sbps.config.choices import Rules, Untagged
from sbps.core.errors import InputError
from sbps.core.model import ArtifactType, ImageRecord, Manifest, Problem, S3Url
from sbps.sources.s3 import confine

PE_PREFIX = "PE/"
PE_SUFFIX = ".squashfs"


class Decision(enum.Enum):
    PROJECT = "project"
    UNLABELLED = "unlabelled"
    UNTAGGED = "untagged"  # no metadata at all, skipped by catalog.untagged = "skip"

    @property
    def projected(self) -> bool:
        return self is Decision.PROJECT


def decide(metadata: Mapping[str, str] | None, cfg: CatalogConfig, *,
           raw: Any = None) -> Decision:
    """The label rule for one record's metadata (None: the record has no metadata).

    ``raw`` is the record's metadata as IMS sent it, before ``parse_metadata`` turned JSON
    ``true`` or ``1`` into text: the field rule compares that value, as the field did.
    """
    if not cfg.tagging:
        return Decision.PROJECT
    field = cfg.rules is Rules.FIELD
    if metadata is None:
        if field or cfg.untagged is Untagged.PROJECT:
            return Decision.PROJECT
        return Decision.UNTAGGED
    if field:
        value = metadata.get(cfg.label_key) if raw is None else _raw_label(raw, cfg.label_key)
        # The field: ``ims_image['metadata']['sbps-project'] != "true"`` skips the image.
        return Decision.PROJECT if value == "true" else Decision.UNLABELLED
    value = metadata.get(cfg.label_key)
    if isinstance(value, str) and value.strip().lower() == "true":
        return Decision.PROJECT
    return Decision.UNLABELLED


def _raw_label(raw: Any, key: str) -> Any:
    """The label's value as sent: from a map, or from IMS's list of ``{key, value}``."""
    if isinstance(raw, Mapping):
        return raw.get(key)
    if isinstance(raw, list):
        for pair in raw:
            if isinstance(pair, Mapping) and pair.get("key") == key:
                return pair.get("value")
    return None


def decide_record(record: ImageRecord, cfg: CatalogConfig) -> Decision:
    return decide(record.metadata if record.has_metadata else None, cfg)


def is_pe_object(url: S3Url, bucket: str, rules: Rules = Rules.STRICT) -> bool:
    """An object that is a PE image: ``PE/<file>.squashfs`` directly under PE/ (strict), or
    any object under PE/ but a folder marker (field)."""
    if url.bucket != bucket or not url.key.startswith(PE_PREFIX):
        return False
    name = url.key[len(PE_PREFIX):]
    if rules is Rules.FIELD:
        return bool(name) and not name.endswith("/")
    return "/" not in name and name.endswith(PE_SUFFIX) and len(name) > len(PE_SUFFIX)


def pe_name(url: S3Url) -> str:
    return url.key[len(PE_PREFIX):]


def registered_pe(records: Iterable[ImageRecord], bucket: str,
                  cfg: CatalogConfig) -> dict[str, str]:
    """PE object keys registered by labelled records -> the registering record's id.

    Records with a link into PE/ register by URL; records without a link register by
    name (``<file>`` or its stem) and are matched against listed objects by the caller,
    so both forms are returned here as candidate keys.
    """
    out: dict[str, str] = {}
    for record in records:
        if not decide_record(record, cfg).projected:
            continue
        if record.manifest is not None:
            if is_pe_object(record.manifest, bucket, cfg.rules):
                out.setdefault(record.manifest.key, record.ims_id)
            continue
        name = record.name if record.name.endswith(PE_SUFFIX) else record.name + PE_SUFFIX
        if "/" not in name:
            out.setdefault(PE_PREFIX + name, record.ims_id)
    return out


def _short(kind: str) -> str:
    known = {t.value: t.name.lower() for t in ArtifactType}
    return known.get(kind, kind[:60])


def foreign_links(obj: str, manifest: Manifest, allowed: Collection[str]) -> Problem | None:
    """The first artifact of ``manifest`` whose link leaves the allowed buckets, as a
    ``foreign_bucket`` problem of ``obj``; None when every link is allowed. Every artifact
    counts, read by sbps or not (rootfs, boot parameters, kernel, initrd): an image whose
    author points any of them elsewhere is not an image of this bucket."""
    for artifact in manifest.artifacts:
        try:
            confine(artifact.url, allowed, obj,
                    f"manifest.artifacts[{_short(artifact.type)}].link.path")
        except InputError as exc:
            return Problem(exc.obj, exc.field, exc.reason, exc.code)
    return None
