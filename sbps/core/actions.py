"""The actions plan() emits and apply() executes, the notes it records, and the Plan.

Owns plain frozen dataclasses; each action carries the reason it is taken and the subject
(an image's backstore name) that groups one image's actions. The actions a target backend
executes derive from ``TargetAction``, which says which object of the target each changes
(``touches``); every backend dispatches them with one table from action type to handler,
which tests/unit/test_actions.py checks covers every ``TargetAction``. Must not import any
other sbps module but ``model`` and ``target_state``, and must not do I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sbps.core.model import DesiredImage, Identity
from sbps.core.target_state import Chap, Lun, Portal, StorageObject


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


class ObjectType(enum.Enum):
    """The objects of this worker's target that one action can change by itself."""

    STORAGE_OBJECT = "storage object"
    LUN = "lun"
    ACL = "acl"


@dataclass(frozen=True)
class TargetObject:
    """One object of this worker's target: a storage object by name, a TPG LUN by index,
    a node ACL by initiator name."""

    type: ObjectType
    name: str


@dataclass(frozen=True, kw_only=True)
class TargetAction(Action):
    """Base of the actions a target backend executes (and apply() counts as target
    writes). ``touches`` is the one object the action changes, or None when it changes
    the target or its TPG as a whole (a backend that caches per object drops that one)."""

    @property
    def touches(self) -> TargetObject | None:
        return None


@dataclass(frozen=True)
class CreateStorageObject(TargetAction):
    storage: StorageObject

    @property
    def touches(self) -> TargetObject:
        return TargetObject(ObjectType.STORAGE_OBJECT, self.storage.name)


@dataclass(frozen=True)
class DeleteStorageObject(TargetAction):
    name: str

    @property
    def touches(self) -> TargetObject:
        return TargetObject(ObjectType.STORAGE_OBJECT, self.name)


@dataclass(frozen=True)
class CreateLun(TargetAction):
    lun: Lun

    @property
    def touches(self) -> TargetObject:
        return TargetObject(ObjectType.LUN, str(self.lun.index))


@dataclass(frozen=True)
class DeleteLun(TargetAction):
    index: int

    @property
    def touches(self) -> TargetObject:
        return TargetObject(ObjectType.LUN, str(self.index))


@dataclass(frozen=True)
class CreateTarget(TargetAction):
    iqn: str


@dataclass(frozen=True)
class SetTpgEnabled(TargetAction):
    enabled: bool


@dataclass(frozen=True)
class SetPortals(TargetAction):
    """Add portals to this worker's TPG and remove the ones in ``remove`` (only portals
    sbps created); every other portal is left as it is."""

    add: frozenset[Portal] = frozenset()
    remove: frozenset[Portal] = frozenset()


@dataclass(frozen=True)
class SetTpgAttributes(TargetAction):
    attributes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AclAction(TargetAction):
    """Base of the actions on one node ACL (or, for ``SetAuth`` without an initiator, on
    the TPG's own credentials)."""

    initiator: str | None

    @property
    def touches(self) -> TargetObject | None:
        return None if self.initiator is None else TargetObject(ObjectType.ACL,
                                                                self.initiator)


@dataclass(frozen=True)
class CreateAcl(AclAction):
    initiator: str


@dataclass(frozen=True)
class DeleteAcl(AclAction):
    initiator: str


@dataclass(frozen=True)
class MapLun(AclAction):
    """Map TPG LUN ``lun`` into ``initiator``'s ACL as the same number, write-protected
    (also repairs an existing mapping that is writable)."""

    initiator: str
    lun: int


@dataclass(frozen=True)
class UnmapLun(AclAction):
    initiator: str
    lun: int


@dataclass(frozen=True)
class SetAuth(AclAction):
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
