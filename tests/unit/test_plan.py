"""Table-driven tests of plan(): one case per field failure and per lifecycle event."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sbps.core import identity
from sbps.core.actions import (
    ClaimLun,
    CreateLun,
    CreateStorageObject,
    CreateTarget,
    DeleteLun,
    DeleteStorageObject,
    ReleaseClaim,
    SetPortals,
    SetTpgAttributes,
    SetTpgEnabled,
    StageImage,
)
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import Lun, Portal, StorageObject, TargetState
from sbps.reconcile.plan import PlanInput, plan, retiring

CACHE = "/var/lib/sbps/cache"
IQN = "iqn.2023-06.csm.iscsi:ncn-w001"
ATTRS = (("generate_node_acls", "1"), ("demo_mode_write_protect", "1"))
PORTALS = frozenset({Portal("127.0.0.1", 3260)})


def image(n: int, etag: str = "e0") -> DesiredImage:
    url = S3Url("boot-images", f"img{n}/rootfs")
    ident = identity.rootfs(url, etag)
    return DesiredImage(ident, ImageKind.ROOTFS, ObjectInfo(url, etag, 4096 * n), f"img{n}",
                        ims_id=f"id-{n}")


def so_for(img: DesiredImage, path: str | None = None) -> StorageObject:
    i = img.identity
    return StorageObject(i.name, path or f"{CACHE}/{i.digest}.squashfs", img.source.size,
                         i.serial, i.product_id)


def target(*exports: tuple[DesiredImage, int], extra: tuple[StorageObject, ...] = (),
           extra_luns: tuple[Lun, ...] = (), enabled: bool = True) -> TargetState:
    return TargetState(IQN, exists=True, tpg_enabled=enabled, portals=PORTALS,
                       storage_objects=tuple(so_for(i) for i, _ in exports) + extra,
                       luns=tuple(Lun(n, i.identity.name) for i, n in exports) + extra_luns,
                       attributes=ATTRS)


def inp(desired: tuple[DesiredImage, ...], t: TargetState, **kw: object) -> PlanInput:
    staged = {i.identity.digest: f"{CACHE}/{i.identity.digest}.squashfs" for i in desired}
    claims = {i.identity.digest: 10 + n for n, i in enumerate(desired)}
    base = PlanInput(desired=desired, target=t, cache_dir=CACHE, staged=staged,
                     claims=claims, serve=True, portals=PORTALS, attributes=ATTRS)
    return replace(base, **kw)  # type: ignore[arg-type]


A, B, C = image(1), image(2), image(3)


def kinds(p: object) -> list[str]:
    return [a.kind for a in p.actions]  # type: ignore[attr-defined]


def test_converged_target_plans_nothing() -> None:
    """Restart is a no-op: a converged target gets an empty plan."""
    p = plan(inp((A, B), target((A, 10), (B, 11))))
    assert p.actions == ()


def test_label_claims_then_stages_then_exports() -> None:
    t = target()
    p = plan(inp((A,), t, claims={}, candidates={A.identity.digest: 42}))
    assert p.actions == (ClaimLun(A.identity, 42, subject=A.identity.name,
                                  reason="new image needs a LUN id"),)
    p = plan(inp((A,), t, staged={}))
    assert kinds(p) == ["StageImage"]
    assert isinstance(p.actions[0], StageImage) and p.actions[0].image == A
    p = plan(inp((A,), t))
    assert kinds(p) == ["CreateStorageObject", "CreateLun"]
    create = p.actions[0]
    assert isinstance(create, CreateStorageObject)
    assert create.storage.serial == A.identity.serial
    assert create.storage.product_id == A.identity.product_id
    assert p.actions[1] == CreateLun(Lun(10, A.identity.name), subject=A.identity.name,
                                     reason="export at claimed LUN 10")


def test_field_failure_3_partial_object_is_never_exported() -> None:
    """Only a verified cache file is exported; an unstaged image gets staged, not a LUN."""
    p = plan(inp((A,), target(), staged={}))
    assert not any(isinstance(a, (CreateLun, CreateStorageObject)) for a in p.actions)


def test_blocked_image_is_not_staged_again() -> None:
    p = plan(inp((A,), target(), staged={}, blocked=frozenset({A.identity.digest})))
    assert p.actions == ()


def test_field_failure_2_ids_do_not_depend_on_order() -> None:
    claims = {A.identity.digest: 7, B.identity.digest: 3, C.identity.digest: 200}
    p1 = plan(inp((A, B, C), target(), claims=claims))
    p2 = plan(inp((C, A, B), target(), claims=claims))
    assert set(p1.actions) == set(p2.actions)
    luns = {a.lun.index: a.lun.storage_object for a in p1.actions if isinstance(a, CreateLun)}
    assert luns == {7: A.identity.name, 3: B.identity.name, 200: C.identity.name}


@pytest.mark.parametrize("due", [False, True])
def test_field_failure_5_unlabel_waits_for_idle(due: bool) -> None:
    t = target((A, 10), (B, 11))
    p = plan(inp((A,), t, claims={A.identity.digest: 10, B.identity.digest: 11},
                 retire_due=frozenset({B.identity.name}) if due else frozenset()))
    if not due:
        assert p.actions == ()
        assert [n.code for n in p.notes] == ["retiring"]
    else:
        name = B.identity.name
        assert kinds(p) == ["DeleteLun", "DeleteStorageObject", "ReleaseClaim"]
        assert p.actions[0] == DeleteLun(11, subject=name, reason=p.actions[0].reason)
        assert p.actions[1] == DeleteStorageObject(name, subject=name,
                                                   reason=p.actions[1].reason)
        assert p.actions[2] == ReleaseClaim(B.identity.digest, 11, subject=name,
                                            reason="its LUN was removed")


def test_field_failure_6_desired_image_is_never_removed_even_if_due() -> None:
    """An image the catalog still reports (last known good on a transient error) stays,
    whatever the retirement bookkeeping says; so does a re-labelled one."""
    t = target((A, 10))
    p = plan(inp((A,), t, retire_due=frozenset({A.identity.name})))
    assert p.actions == ()
    assert retiring(inp((A,), t)) == frozenset()


def test_etag_change_exports_new_version_beside_old() -> None:
    new = image(1, etag="e1")
    t = target((A, 10))
    p = plan(inp((new,), t, claims={A.identity.digest: 10, new.identity.digest: 99}))
    assert kinds(p) == ["CreateStorageObject", "CreateLun"]
    assert p.actions[1] == CreateLun(Lun(99, new.identity.name), subject=new.identity.name,
                                     reason="export at claimed LUN 99")
    assert [n.code for n in p.notes] == ["retiring"]
    assert new.identity.serial != A.identity.serial


def test_claimed_id_taken_by_another_object_is_a_conflict_not_a_removal() -> None:
    foreign = StorageObject("other", "/srv/other.img", 1, "x", "y")
    t = target(extra=(foreign,), extra_luns=(Lun(10, "other"),))
    t = replace(t, foreign=("other",))
    p = plan(inp((A,), t))
    assert p.actions == ()
    assert {n.code for n in p.notes} == {"lun_conflict", "foreign"}


def test_foreign_objects_are_left_alone() -> None:
    foreign = StorageObject("admin-disk", "/srv/disk.img", 1, "s", "p")
    t = replace(target(extra=(foreign,), extra_luns=(Lun(1, "admin-disk"),)),
                foreign=("admin-disk",))
    p = plan(inp((), t, retire_due=frozenset({"admin-disk"})))
    assert p.actions == ()


def test_adoption_keeps_the_field_agents_lun_number() -> None:
    old = so_for(A, path="/var/lib/s3fs_mount/img1/rootfs")
    t = target(extra=(old,), extra_luns=(Lun(4, A.identity.name),))
    adopted = frozenset({A.identity.name})
    p = plan(inp((A,), t, claims={}, adopted=adopted))
    assert p.actions == (ClaimLun(A.identity, 4, subject=A.identity.name,
                                  reason="LUN 4 is exported without a claim"),)
    claims = {A.identity.digest: 4}
    assert plan(inp((A,), t, claims=claims, adopted=adopted)).actions == ()
    # Not yet in the cache: staged while the adopted LUN keeps serving, nothing removed.
    assert kinds(plan(inp((A,), t, claims=claims, adopted=adopted, staged={}))) == [
        "StageImage"]
    p = plan(inp((A,), t, claims=claims, adopted=adopted, switch_backing=adopted))
    assert kinds(p) == ["DeleteLun", "DeleteStorageObject", "CreateStorageObject", "CreateLun"]
    assert isinstance(p.actions[3], CreateLun) and p.actions[3].lun.index == 4


def test_exported_lun_at_a_different_id_than_its_claim_stays_beside_it() -> None:
    """The old id keeps serving; the image is exported at its claim too (the takeover
    tables are in test_plan_takeover.py)."""
    p = plan(inp((A,), target((A, 5))))
    assert p.actions == (CreateLun(Lun(10, A.identity.name), subject=A.identity.name,
                                   reason=p.actions[0].reason),)
    assert not any(isinstance(a, DeleteLun) for a in p.actions)


@pytest.mark.parametrize(("enabled", "serve", "expected"), [
    (True, False, [SetTpgEnabled(False, reason="the node gate is closed")]),
    (False, True, [SetTpgEnabled(True, reason="the node gate is open")]),  # field failure 9
    (True, True, []),
])
def test_gate(enabled: bool, serve: bool, expected: list[object]) -> None:
    p = plan(inp((A,), target((A, 10), enabled=enabled), serve=serve))
    assert list(p.actions) == expected


def test_missing_target_portals_and_attributes_are_created() -> None:
    t = TargetState(IQN)
    p = plan(inp((), t))
    assert p.actions == (
        CreateTarget(IQN, reason="this worker's target does not exist"),
        SetPortals(add=PORTALS, reason="add 127.0.0.1:3260: configured in target.portals"),
        SetTpgAttributes(ATTRS, reason=p.actions[2].reason),
        SetTpgEnabled(True, reason="the node gate is open"),
    )


def test_duplicate_desired_entries_are_noted_once() -> None:
    p = plan(inp((A, A), target((A, 10)), claims={A.identity.digest: 10}))
    assert p.actions == ()
    assert [n.code for n in p.notes] == ["duplicate"]


def test_every_action_has_a_reason() -> None:
    p = plan(inp((A, B), target((C, 30)), claims={A.identity.digest: 1, C.identity.digest: 30},
                 retire_due=frozenset({C.identity.name})))
    assert p.actions and all(a.reason for a in p.actions)


def test_promoted_image_is_removed_before_its_new_version_is_exported() -> None:
    t = target((A, 10))
    p = plan(inp((A,), t, replace=frozenset({A.identity.name})))
    assert kinds(p) == ["DeleteLun", "DeleteStorageObject"]
    after = plan(inp((A,), target(), replace=frozenset({A.identity.name})))
    assert kinds(after) == ["CreateStorageObject", "CreateLun"]


def test_adopted_objects_are_not_reported_foreign() -> None:
    old = so_for(A, path="/var/lib/s3fs_mount/img1/rootfs")
    t = replace(target(extra=(old,), extra_luns=(Lun(4, A.identity.name),)),
                foreign=(A.identity.name,))
    p = plan(inp((A,), t, claims={A.identity.digest: 4}, adopted=frozenset({A.identity.name})))
    assert p.actions == () and p.notes == ()


def test_a_retired_backstore_releases_its_own_claim_only() -> None:
    """The claim of a retired backstore is the one whose identity names it, not every
    digest that begins with the name (a cache-backed backstore of another name)."""
    short = StorageObject(B.identity.digest[:4], f"{CACHE}/{B.identity.digest}.squashfs",
                          4096, "x", "x")
    t = target((A, 10), extra=(short,), extra_luns=(Lun(11, short.name),))
    p = plan(inp((A,), t, claims={A.identity.digest: 10, B.identity.digest: 11},
                 retire_due=frozenset({short.name})))
    assert kinds(p) == ["DeleteLun", "DeleteStorageObject"]
