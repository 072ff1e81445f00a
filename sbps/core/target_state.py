"""The model of an iSCSI target: backstores, LUNs, portals, CHAP credentials, node ACLs,
the access policy's view of them, the live state a backend reads and its I/O counters.

Owns plain frozen dataclasses and enums, compared by value, like ``sbps.core.model`` (whose
constants it uses). Must not import any other sbps module and must not do I/O: the planner
imports this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sbps.core.model import VENDOR


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


class AccessMode(enum.StrEnum):
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
class LoggedIn:
    """An initiator logged in to this worker's target now. ``luns``: what it has read per
    LUN (the LUN id as the target numbers it), where the target counts per initiator (an
    explicit ACL on LIO, every session on tgt); None where it does not (LIO's generated ACLs
    count per LUN only)."""

    initiator: str
    addresses: tuple[str, ...] = ()
    luns: tuple[LunStats, ...] | None = None

