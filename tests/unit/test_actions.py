"""The action protocol: which actions are target actions, what each touches, and that every
backend's one dispatch table covers every target action (so a new action cannot be
forgotten by one backend)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sbps.config import TargetConfig
from sbps.core.actions import (
    AclAction,
    Action,
    ClaimLun,
    CreateAcl,
    CreateLun,
    CreateStorageObject,
    CreateTarget,
    DeleteAcl,
    DeleteLun,
    DeleteStorageObject,
    MapLun,
    ObjectType,
    Plan,
    ReleaseClaim,
    SetAuth,
    SetPortals,
    SetTpgAttributes,
    SetTpgEnabled,
    StageImage,
    TargetAction,
    TargetObject,
    UnmapLun,
)
from sbps.core.errors import BackendError
from sbps.core.model import Identity
from sbps.core.target_state import Chap, Lun, StorageObject
from sbps.reconcile.apply import apply
from sbps.target.lio import backend as lio
from sbps.target.tgt import backend as tgt
from sbps.target.tgt.tgtadm import Tgtadm

#: Bases that group target actions; plan() never emits them.
BASES = frozenset({TargetAction, AclAction})
BACKENDS = {"lio": lio.HANDLERS, "tgt": tgt.HANDLERS}


def target_action_types() -> frozenset[type]:
    found: set[type] = set()
    todo: list[type] = [TargetAction]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return frozenset(found - BASES)


def uncovered(table: Mapping[type, object]) -> frozenset[type]:
    """Target actions a backend's table has no handler for, and entries that are not
    target actions: both must be empty."""
    types = target_action_types()
    return (types - table.keys()) | (table.keys() - types)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_target_action_has_one_handler_on_every_backend(name: str) -> None:
    assert target_action_types() >= {CreateTarget, SetAuth, MapLun, DeleteStorageObject}
    assert uncovered(BACKENDS[name]) == frozenset()


def test_a_forgotten_or_foreign_entry_is_found() -> None:
    """Negative control: the check above fails for a table that misses an action or holds
    one that is not a target action."""
    missing = {k: v for k, v in lio.HANDLERS.items() if k is not UnmapLun}
    assert uncovered(missing) == {UnmapLun}
    assert uncovered({**tgt.HANDLERS, StageImage: None}) == {StageImage}


CHAP = Chap("user", None)
SO = StorageObject("abc", "/cache/abc", 1, "serial", "abc")


@pytest.mark.parametrize("action, touched", [
    (CreateStorageObject(SO, reason="t"), TargetObject(ObjectType.STORAGE_OBJECT, "abc")),
    (DeleteStorageObject("abc", reason="t"), TargetObject(ObjectType.STORAGE_OBJECT, "abc")),
    (CreateLun(Lun(7, "abc"), reason="t"), TargetObject(ObjectType.LUN, "7")),
    (DeleteLun(7, reason="t"), TargetObject(ObjectType.LUN, "7")),
    (CreateAcl("iqn.x", reason="t"), TargetObject(ObjectType.ACL, "iqn.x")),
    (DeleteAcl("iqn.x", reason="t"), TargetObject(ObjectType.ACL, "iqn.x")),
    (MapLun("iqn.x", 7, reason="t"), TargetObject(ObjectType.ACL, "iqn.x")),
    (UnmapLun("iqn.x", 7, reason="t"), TargetObject(ObjectType.ACL, "iqn.x")),
    (SetAuth("iqn.x", CHAP, reason="t"), TargetObject(ObjectType.ACL, "iqn.x")),
    (SetAuth(None, CHAP, reason="t"), None),
    (CreateTarget("iqn.t", reason="t"), None),
    (SetTpgEnabled(True, reason="t"), None),
    (SetPortals(frozenset(), reason="t"), None),
    (SetTpgAttributes((), reason="t"), None),
])
def test_what_each_target_action_touches(action: TargetAction,
                                         touched: TargetObject | None) -> None:
    assert action.touches == touched


IDENT = Identity("key", "d" * 56)
NOT_TARGET = (ClaimLun(IDENT, 3, reason="t"), ReleaseClaim("d" * 56, 3, reason="t"))


@pytest.mark.parametrize("action", NOT_TARGET, ids=lambda a: a.kind)
def test_backends_refuse_what_is_not_a_target_action(action: Action, tmp_path: Path) -> None:
    assert not isinstance(action, TargetAction)
    # Neither backend reaches a target for this: no tgtd on that port, no configfs there.
    backends = (tgt.TgtBackend("iqn.t", Tgtadm("tgtadm", 1)),
                lio.LioBackend(TargetConfig(configfs_root=str(tmp_path / "none")),
                               str(tmp_path), "iqn.t"))
    for backend in backends:
        with pytest.raises(BackendError, match="not a target action"):
            backend.apply(action)


@dataclass
class Effects:
    """apply()'s ports, recording what reached each."""

    seen: list[str]

    def stage(self, image: object) -> None:
        self.seen.append("stage")

    async def claim(self, action: ClaimLun) -> int:
        self.seen.append("claim")
        return action.lun_id

    async def release(self, action: ReleaseClaim) -> None:
        self.seen.append("release")

    async def target(self, action: TargetAction) -> None:
        self.seen.append(action.kind)

    async def commit(self) -> None:
        self.seen.append("commit")


@dataclass(frozen=True)
class Unknown(Action):
    pass


def test_apply_sends_target_actions_to_the_target_and_counts_them_as_writes() -> None:
    ports = Effects([])
    plan = Plan((*NOT_TARGET, CreateTarget("iqn.t", reason="t"),
                 Unknown(reason="t", subject="img"), DeleteLun(3, reason="t", subject="img")))
    report = asyncio.run(apply(plan, ports))  # type: ignore[arg-type]
    assert ports.seen == ["claim", "release", "CreateTarget", "commit"]
    assert report.target_writes == 1
    assert [(r.action.kind, r.ok, r.skipped) for r in report.results][2:] == [
        ("CreateTarget", True, False), ("Unknown", False, False), ("DeleteLun", False, True)]
