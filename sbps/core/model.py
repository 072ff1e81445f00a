"""The typed state of sbps: images, manifests, catalog problems, desired images, claims and
cache entries (the target's model is in ``target_state``, actions in ``actions``).

Owns plain frozen dataclasses and enums, compared by value. Dicts from JSON are parsed into
these at the boundary (catalog, backends) and never travel further. Must not import any
other sbps module but ``errors`` and must not do I/O: the planner imports only this.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

WWID_PREFIX = "36001405"
VENDOR = "LIO-ORG"


class ImageKind(enum.Enum):
    ROOTFS = "rootfs"
    PE = "pe"


class Arch(enum.Enum):
    X86_64 = "x86_64"
    AARCH64 = "aarch64"


class ImageState(enum.Enum):
    DISCOVERED = "discovered"
    STAGING = "staging"
    STAGED = "staged"
    EXPORTED = "exported"
    RETIRING = "retiring"
    REMOVED = "removed"
    FAILED = "failed"


class ArtifactType(enum.StrEnum):
    """The manifest artifact types sbps reads; its value is the type's text."""

    ROOTFS = "application/vnd.cray.image.rootfs.squashfs"
    KERNEL = "application/vnd.cray.image.kernel"
    INITRD = "application/vnd.cray.image.initrd"
    BOOT_PARAMETERS = "application/vnd.cray.image.parameters.boot"


def backstore_name(digest: str) -> str:
    """The backstore name (and SCSI product id) of the identity with this digest: the rule
    that ties a backstore on the target to its claim."""
    return digest[:15]


@dataclass(frozen=True)
class CacheDir:
    """The directory of verified image files. A backstore backed by a file below it is
    sbps's own; ``root`` is the configured path (a backstore keeps the path it was made
    with)."""

    root: str

    def holds(self, path: str) -> bool:
        return path.startswith(self.root.rstrip("/") + "/")


_ARTIFACT_TYPES = frozenset(t.value for t in ArtifactType)


@dataclass(frozen=True)
class S3Url:
    """An object address ``s3://bucket/key``; validated where it is parsed (catalog)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Identity:
    """What makes an image's LUN recognisable to every initiator, on every worker.

    ``key`` is the identity key (``<path>|<etag>`` or a PE path); ``digest`` its SHA-224 hex.
    The derived names are fixed by the field initiators and must never change.
    """

    key: str
    digest: str

    @property
    def name(self) -> str:
        """Backstore name and SCSI product id."""
        return backstore_name(self.digest)

    @property
    def product_id(self) -> str:
        return backstore_name(self.digest)

    @property
    def serial(self) -> str:
        """SCSI unit serial number (VPD 0x80)."""
        return self.digest[:31]

    @property
    def wwid(self) -> str:
        """The multipath WWID an initiator derives from the NAA designator."""
        return WWID_PREFIX + self.serial[:25]


@dataclass(frozen=True)
class Artifact:
    url: S3Url
    etag: str | None
    md5: str | None
    #: A type sbps reads, or the text of any other (kept, never read). Given as text, a
    #: type sbps reads is stored as its member, so ``Manifest.first`` finds it.
    type: ArtifactType | str

    def __post_init__(self) -> None:
        if not isinstance(self.type, ArtifactType) and self.type in _ARTIFACT_TYPES:
            object.__setattr__(self, "type", ArtifactType(self.type))


@dataclass(frozen=True)
class Manifest:
    version: str
    created: datetime | None
    artifacts: tuple[Artifact, ...]

    def first(self, kind: ArtifactType) -> Artifact | None:
        return next((a for a in self.artifacts if a.type is kind), None)


@dataclass(frozen=True)
class ImageRecord:
    """An IMS image record after tolerant parsing. ``metadata`` is always a flat map."""

    ims_id: str
    name: str
    created: datetime | None
    arch: Arch
    manifest: S3Url | None
    manifest_etag: str | None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False, compare=True)
    #: False when the record has no metadata at all (not even an empty map): the label
    #: rule treats such records by ``catalog.untagged``.
    has_metadata: bool = True


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, reported and skipped: ``(object, field, reason)``."""

    obj: str
    field: str
    reason: str
    code: str = "invalid"


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 says about an object (HEAD or listing)."""

    url: S3Url
    etag: str
    size: int
    parts: int = 0
    part_size: int = 0


@dataclass(frozen=True)
class DesiredImage:
    """One image version this worker should export."""

    identity: Identity
    kind: ImageKind
    source: ObjectInfo
    name: str
    ims_id: str | None = None
    arch: Arch | None = None
    md5: str | None = None
    manifest: S3Url | None = None
    manifest_etag: str | None = None
    #: The tenant that owns the image (the IMS record's ``target.tenant_label``); None:
    #: untenanted. In ``target.access = acl`` it decides which initiators may read it.
    tenant: str | None = None
    #: The text of the manifest's boot-parameters artifact, read by the catalog pass when
    #: the manifest was; None: no such artifact, or unreadable (``boot_parameters_error``
    #: then holds the problem code). ``GET /v1/bootparams`` serves only this copy.
    boot_parameters: str | None = None
    boot_parameters_error: str = ""


@dataclass(frozen=True)
class Claim:
    """The agreed LUN id of an identity, as held in the shared claim registry.

    ``released_at`` is set when the last holder left; ``previous_pe_etag`` is the PE etag
    this claim carried before the last ``promote``. Times are POSIX seconds.
    """

    lun_id: int
    identity_key: str
    digest: str
    holders: frozenset[str] = frozenset()
    pe_etag: str | None = None
    released_at: float | None = None
    created_at: float | None = None
    updated_at: float | None = None
    previous_pe_etag: str | None = None

    def held_by(self, hostname: str) -> bool:
        return hostname in self.holders


@dataclass(frozen=True)
class CacheEntry:
    """A complete, verified cache file."""

    digest: str
    path: str
    size: int
    etag: str
    verified_at: float
