"""The actions plan() emits and apply() executes, the notes it records, and the Plan.

Owns plain frozen dataclasses; each action carries the reason it is taken and the subject
(an image's backstore name) that groups one image's actions. Must not import any other sbps
module but ``model`` and ``target_state``, and must not do I/O.
"""

from __future__ import annotations

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
