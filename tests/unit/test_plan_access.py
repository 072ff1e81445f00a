"""Table-driven tests of the access part of plan(): node ACLs, mapped LUNs, CHAP."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sbps.core import identity
from sbps.core.actions import (
    CreateAcl,
    CreateLun,
    DeleteAcl,
    DeleteLun,
    MapLun,
    SetAuth,
    SetTpgAttributes,
    UnmapLun,
)
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import (
    NO_CHAP,
    AccessMode,
    AccessSpec,
    AclSpec,
    Chap,
    Lun,
    MappedLun,
    NodeAcl,
    Portal,
    Secret,
    StorageObject,
    TargetState,
)
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.access.policy import OPEN_ATTRIBUTES, attributes

CACHE = "/var/lib/sbps/cache"
IQN = "iqn.2023-06.csm.iscsi:ncn-w001"
PORTALS = frozenset({Portal("127.0.0.1", 3260)})
A = "iqn.2024-01.node:a"
B = "iqn.2024-01.node:b"
CHAP = Chap("node", Secret("twelve-chars-1"))
CHAP2 = Chap("node", Secret("twelve-chars-2"))
MUTUAL = Chap("node", Secret("twelve-chars-1"), "target", Secret("other-secret-1"))


def image(n: int) -> DesiredImage:
    url = S3Url("boot-images", f"img{n}/rootfs")
    ident = identity.rootfs(url, "e0")
    return DesiredImage(ident, ImageKind.ROOTFS, ObjectInfo(url, "e0", 4096), f"img{n}")


I1, I2, I3 = image(1), image(2), image(3)
ACL_ATTRS = attributes(AccessSpec(AccessMode.ACL))


def so(img: DesiredImage) -> StorageObject:
    i = img.identity
    return StorageObject(i.name, f"{CACHE}/{i.digest}", 4096, i.serial, i.product_id)


def target(*exports: tuple[DesiredImage, int], acls: tuple[NodeAcl, ...] = (),
           chap: Chap = NO_CHAP, attrs: tuple[tuple[str, str], ...] = ACL_ATTRS
           ) -> TargetState:
    return TargetState(IQN, exists=True, tpg_enabled=True, portals=PORTALS,
                       storage_objects=tuple(so(i) for i, _ in exports),
                       luns=tuple(Lun(n, i.identity.name) for i, n in exports),
                       attributes=attrs, acls=acls, chap=chap)


def acl(initiator: str, *luns: int, chap: Chap = NO_CHAP, writable: tuple[int, ...] = (),
        owned: bool = True) -> NodeAcl:
    return NodeAcl(initiator, tuple(MappedLun(n, n, n not in writable) for n in luns), chap,
                   owned)


def want(initiator: str, *imgs: DesiredImage, chap: Chap = NO_CHAP) -> AclSpec:
    return AclSpec(initiator, frozenset(i.identity.name for i in imgs), chap)


def spec(*acls: AclSpec, chap: Chap = NO_CHAP) -> AccessSpec:
    return AccessSpec(AccessMode.ACL, acls, chap)


def inp(desired: tuple[DesiredImage, ...], t: TargetState, access: AccessSpec,
        **kw: object) -> PlanInput:
    claims = {lun.storage_object: lun.index for lun in t.luns}
    base = PlanInput(desired=desired, target=t, cache_dir=CACHE,
                     staged={i.identity.digest: f"{CACHE}/{i.identity.digest}"
                             for i in desired},
                     claims={i.identity.digest: claims.get(i.identity.name, 40 + n)
                             for n, i in enumerate(desired)},
                     portals=PORTALS, attributes=attributes(access), access=access)
    return replace(base, **kw)  # type: ignore[arg-type]


def access_actions(p: PlanInput) -> list[tuple[str, str | None, object]]:
    out: list[tuple[str, str | None, object]] = []
    for a in plan(p).actions:
        if isinstance(a, (CreateAcl, DeleteAcl)):
            out.append((a.kind, a.initiator, None))
        elif isinstance(a, (MapLun, UnmapLun)):
            out.append((a.kind, a.initiator, a.lun))
        elif isinstance(a, SetAuth):
            out.append((a.kind, a.initiator, a.chap.user or None))
    return out


CASES = [
    ("converged: nothing to do",
     inp((I1, I2), target((I1, 1), (I2, 2), acls=(acl(A, 1), acl(B, 2))),
         spec(want(A, I1), want(B, I2))), []),
    ("new initiator: ACL, then each of its images mapped",
     inp((I1, I2), target((I1, 1), (I2, 2)), spec(want(A, I1, I2))),
     [("CreateAcl", A, None), ("MapLun", A, 1), ("MapLun", A, 2)]),
    ("a tenant's image is never mapped into another tenant's ACL",
     inp((I1, I2), target((I1, 1), (I2, 2), acls=(acl(A, 1, 2), acl(B, 2))),
         spec(want(A, I1), want(B, I2))),
     [("UnmapLun", A, 2)]),
    ("an initiator that lost access loses its ACL at once",
     inp((I1,), target((I1, 1), acls=(acl(A, 1), acl(B, 1))), spec(want(A, I1))),
     [("DeleteAcl", B, None)]),
    ("a new image is mapped in the same pass it is exported, at its LUN id",
     inp((I1, I3), target((I1, 1), acls=(acl(A, 1),)), spec(want(A, I1, I3))),
     [("MapLun", A, 41)]),
    ("a writable mapping is write-protected",
     inp((I1,), target((I1, 1), acls=(acl(A, 1, writable=(1,)),)), spec(want(A, I1))),
     [("MapLun", A, 1)]),
    ("CHAP per ACL: set when it differs (rotated secret), not when equal",
     inp((I1,), target((I1, 1), acls=(acl(A, 1, chap=CHAP), acl(B, chap=CHAP))),
         spec(want(A, I1, chap=CHAP2), want(B, chap=CHAP))),
     [("SetAuth", A, "node")]),
    ("mutual CHAP on a new ACL",
     inp((), target(), spec(want(A, chap=MUTUAL))),
     [("CreateAcl", A, None), ("SetAuth", A, "node")]),
    ("CHAP on the TPG (open mode): set once, before the attributes",
     inp((), target(attrs=OPEN_ATTRIBUTES), AccessSpec(chap=CHAP)),
     [("SetAuth", None, "node")]),
    ("open mode: ACLs sbps made are deleted, others only noted",
     inp((I1,), target((I1, 1), acls=(acl(A, 1), acl(B, 1, owned=False)),
                       attrs=OPEN_ATTRIBUTES), AccessSpec()),
     [("DeleteAcl", A, None)]),
    ("a mapping at a number other than its LUN id is redone",
     inp((I1,), target((I1, 1), acls=(NodeAcl(A, (MappedLun(1, 7),)),)), spec(want(A, I1))),
     [("UnmapLun", A, 1), ("MapLun", A, 1)]),
]


@pytest.mark.parametrize(("name", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_access_actions(name: str, given: PlanInput,
                        expected: list[tuple[str, str | None, object]]) -> None:
    assert access_actions(given) == expected


def test_retiring_lun_stays_mapped_until_due_then_is_unmapped_before_it_goes() -> None:
    t = target((I1, 1), (I2, 2), acls=(acl(A, 1, 2),))
    kept = inp((I1,), t, spec(want(A, I1)))
    assert access_actions(kept) == []
    due = plan(replace(kept, retire_due=frozenset({I2.identity.name})))
    kinds = [(a.kind, getattr(a, "lun", getattr(a, "index", None)), a.subject)
             for a in due.actions]
    assert kinds[:2] == [("UnmapLun", 2, I2.identity.name), ("DeleteLun", 2, I2.identity.name)]


def test_switching_an_adopted_backing_maps_the_recreated_lun_again() -> None:
    t = target((I1, 1), acls=(acl(A, 1),))
    moved = replace(t, storage_objects=(replace(so(I1), path="/old/place"),))
    p = inp((I1,), moved, spec(want(A, I1)), adopted=frozenset({I1.identity.name}),
            switch_backing=frozenset({I1.identity.name}))
    kinds = [a.kind for a in plan(p).actions]
    assert kinds == ["DeleteLun", "DeleteStorageObject", "CreateStorageObject", "CreateLun",
                     "MapLun"]


def test_mapping_a_new_image_has_the_image_as_subject() -> None:
    """A LUN that fails to appear skips only its own mappings, not the initiator's others."""
    p = plan(inp((I1, I2), target(), spec(want(A, I1, I2))))
    creates = {a.lun.index: a.subject for a in p.actions if isinstance(a, CreateLun)}
    maps = {a.lun: a.subject for a in p.actions if isinstance(a, MapLun)}
    assert maps == creates and len(maps) == 2
    assert [a.subject for a in p.actions if isinstance(a, CreateAcl)] == [f"acl {A}"]


def test_attributes_follow_the_mode_and_chap() -> None:
    assert attributes(AccessSpec()) == OPEN_ATTRIBUTES
    assert dict(attributes(spec(want(A, chap=CHAP)))) == {
        "generate_node_acls": "0", "demo_mode_write_protect": "1", "cache_dynamic_acls": "0",
        "authentication": "1", "prod_mode_write_protect": "1"}
    p = plan(inp((), target(attrs=OPEN_ATTRIBUTES), spec(want(A))))
    kinds = [a.kind for a in p.actions]
    assert kinds == ["SetTpgAttributes", "CreateAcl"]
    assert dict(next(a for a in p.actions if isinstance(a, SetTpgAttributes)).attributes)[
        "generate_node_acls"] == "0"


def test_secrets_never_show_in_a_plan() -> None:
    p = plan(inp((), target(), spec(want(A, chap=MUTUAL), chap=MUTUAL)))
    text = repr(p) + "".join(a.reason for a in p.actions)
    assert "twelve-chars-1" not in text and "other-secret-1" not in text
    assert "CHAP user node, mutual user target" in text


def test_deleted_lun_is_not_mapped() -> None:
    t = target((I1, 1), acls=(acl(A, 1),))
    p = plan(inp((), t, spec(want(A)), retire_due=frozenset({I1.identity.name})))
    assert [(a.kind, a.subject) for a in p.actions][:2] == [
        ("UnmapLun", I1.identity.name), ("DeleteLun", I1.identity.name)]
    assert not any(isinstance(a, MapLun) for a in p.actions)
    assert any(isinstance(a, DeleteLun) for a in p.actions)
