"""The typed state of sbps: images, manifests, desired and actual target state, actions.

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


class ArtifactType(enum.Enum):
    ROOTFS = "application/vnd.cray.image.rootfs.squashfs"
    KERNEL = "application/vnd.cray.image.kernel"
    INITRD = "application/vnd.cray.image.initrd"
    BOOT_PARAMETERS = "application/vnd.cray.image.parameters.boot"


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
        return self.digest[:15]

    @property
    def product_id(self) -> str:
        return self.digest[:15]

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
    type: str


@dataclass(frozen=True)
class Manifest:
    version: str
    created: datetime | None
    artifacts: tuple[Artifact, ...]

    def first(self, kind: ArtifactType) -> Artifact | None:
        return next((a for a in self.artifacts if a.type == kind.value), None)


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
class StorageObject:
    """A fileio backstore as the target reports it."""

    name: str
    path: str
    size: int
    serial: str
    product_id: str
    vendor: str = VENDOR
    write_back: bool = False
    readonly: bool = True


@dataclass(frozen=True)
class Lun:
    index: int
    storage_object: str


@dataclass(frozen=True)
class Portal:
    address: str
    port: int = 3260

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


class Secret:
    """A secret value (a CHAP password) that never shows itself: ``repr``, ``str`` and
    formatting print ``****``, and it has no ``__dict__`` for serialisers to walk. Compared
    by value, so a plan can tell whether the live secret is the configured one; only a
    backend calls ``reveal()``, to write it to the target."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        return str(object.__getattribute__(self, "_value"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self.reveal()

    def __hash__(self) -> int:
        return hash(("Secret", self.reveal()))

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "****"

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        # dataclasses.asdict() deep-copies leaves: keep the wrapper, never the bare value.
        return self

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class Chap:
    """CHAP credentials of one node ACL or of the whole TPG. No user: no CHAP. The mutual
    pair (the target proves itself to the initiator) is optional. ``secret`` is None when a
    backend cannot read the live secret back (tgt): a plan then sets it again."""

    user: str = ""
    secret: Secret | None = None
    mutual_user: str = ""
    mutual_secret: Secret | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.user)

    @property
    def mutual(self) -> bool:
        return bool(self.mutual_user)

    def describe(self) -> str:
        """For reasons and logs: user names only, never a secret."""
        if not self.enabled:
            return "no CHAP"
        return f"CHAP user {self.user}" + (f", mutual user {self.mutual_user}"
                                           if self.mutual else "")


NO_CHAP = Chap()


@dataclass(frozen=True)
class MappedLun:
    """A LUN mapped into a node ACL: the number the initiator sees and the TPG LUN."""

    index: int
    tpg_lun: int
    write_protect: bool = True


@dataclass(frozen=True)
class NodeAcl:
    """One explicit node ACL of the TPG, as the backend reports it."""

    initiator: str
    luns: tuple[MappedLun, ...] = ()
    chap: Chap = NO_CHAP
    owned: bool = False
    """Made by sbps (LIO: tagged ``sbps``; tgt: any initiator name bound to our target)."""

    def mapped(self) -> dict[int, MappedLun]:
        return {m.index: m for m in self.luns}


class AccessMode(enum.Enum):
    OPEN = "open"
    ACL = "acl"


@dataclass(frozen=True)
class AclSpec:
    """One node ACL as the access policy wants it: the images (backstore names) its
    initiator may read, and its CHAP credentials."""

    initiator: str
    images: frozenset[str] = frozenset()
    chap: Chap = NO_CHAP


@dataclass(frozen=True)
class AccessSpec:
    """What the access policy wants from the target this pass. ``open``: generated ACLs
    (``chap`` on the TPG); ``acl``: exactly ``acls``, each with its own CHAP."""

    mode: AccessMode = AccessMode.OPEN
    acls: tuple[AclSpec, ...] = ()
    chap: Chap = NO_CHAP


@dataclass(frozen=True)
class TargetState:
    """The live state of this worker's target, read from the backend every pass."""

    iqn: str
    exists: bool = False
    tpg_enabled: bool = False
    portals: frozenset[Portal] = frozenset()
    storage_objects: tuple[StorageObject, ...] = ()
    luns: tuple[Lun, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    foreign: tuple[str, ...] = ()
    acls: tuple[NodeAcl, ...] = ()
    """Explicit node ACLs of the TPG (tgt: the initiator names bound to the target)."""
    chap: Chap = NO_CHAP
    """The TPG's own CHAP credentials (used with generated ACLs; tgt: the target account)."""

    def acl_by_initiator(self) -> dict[str, NodeAcl]:
        return {acl.initiator: acl for acl in self.acls}

    def lun_by_index(self) -> dict[int, Lun]:
        return {lun.index: lun for lun in self.luns}

    def storage_by_name(self) -> dict[str, StorageObject]:
        return {so.name: so for so in self.storage_objects}


@dataclass(frozen=True)
class LunStats:
    """Per-LUN I/O counters since the LUN was created."""

    index: int
    read_bytes: int
    commands: int
    tur_commands: int = 0


@dataclass(frozen=True)
class CacheEntry:
    """A complete, verified cache file."""

    digest: str
    path: str
    size: int
    etag: str
    verified_at: float


# Actions. Each carries the reason it is taken; only apply() executes them.

@dataclass(frozen=True, kw_only=True)
class Action:
    """Base of every action. ``subject`` groups the actions of one image (its backstore
    name): when one fails, apply() skips the later actions of the same subject only."""

    reason: str
    subject: str = ""

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class StageImage(Action):
    image: DesiredImage


@dataclass(frozen=True)
class ClaimLun(Action):
    identity: Identity
    lun_id: int


@dataclass(frozen=True)
class ReleaseClaim(Action):
    digest: str
    lun_id: int


@dataclass(frozen=True)
class CreateStorageObject(Action):
    storage: StorageObject


@dataclass(frozen=True)
class DeleteStorageObject(Action):
    name: str


@dataclass(frozen=True)
class CreateLun(Action):
    lun: Lun


@dataclass(frozen=True)
class DeleteLun(Action):
    index: int


@dataclass(frozen=True)
class CreateTarget(Action):
    iqn: str


@dataclass(frozen=True)
class SetTpgEnabled(Action):
    enabled: bool


@dataclass(frozen=True)
class SetPortals(Action):
    portals: frozenset[Portal]


@dataclass(frozen=True)
class SetTpgAttributes(Action):
    attributes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CreateAcl(Action):
    initiator: str


@dataclass(frozen=True)
class DeleteAcl(Action):
    initiator: str


@dataclass(frozen=True)
class MapLun(Action):
    """Map TPG LUN ``lun`` into ``initiator``'s ACL as the same number, write-protected
    (also repairs an existing mapping that is writable)."""

    initiator: str
    lun: int


@dataclass(frozen=True)
class UnmapLun(Action):
    initiator: str
    lun: int


@dataclass(frozen=True)
class SetAuth(Action):
    """Set the CHAP credentials of ``initiator``'s ACL, or of the TPG when it is None."""

    initiator: str | None
    chap: Chap


@dataclass(frozen=True)
class Note:
    """Something plan() noticed and deliberately did not act on, with its reason."""

    subject: str
    code: str
    message: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[Note, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.actions)
