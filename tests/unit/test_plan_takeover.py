"""Tables of the takeover from the field agent (issue 21, items 1 and 5): portals sbps did
not create are never removed or replaced, and field LUNs reach their claimed ids without a
LUN in use ever disappearing. docs/upgrade.md describes the behaviour."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sbps.core.actions import ClaimLun, CreateLun, DeleteLun, Note, SetPortals
from sbps.core.target_state import Lun, LunStats, Portal, StorageObject
from sbps.reconcile.adoption import Adoption
from sbps.reconcile.plan import moving, plan
from sbps.reconcile.plan_portals import portal_actions, unserved
from sbps.reconcile.portals import PortalLedger, parse_portals
from tests.unit.test_plan import CACHE, A, B, inp, kinds, so_for, target

NMN, HSN = Portal("10.252.1.10"), Portal("10.253.1.10")
SITE = frozenset({NMN, HSN})
ANY = Portal("0.0.0.0")


@pytest.mark.parametrize(("configured", "live", "created", "add", "remove", "codes"), [
    # The field worker: the site's NMN and HSN portals, 0.0.0.0 deleted. Kept as they are.
    ((), SITE, (), None, None, []),
    # A TPG with no portal (sbps creates the target): the default one.
    ((), (), (), {ANY}, set(), []),
    # sbps's own portals stay by default too (an admin emptied target.portals).
    ((), {ANY}, {ANY}, None, None, []),
    # Explicitly the site's portals: nothing to do.
    (SITE, SITE, (), None, None, []),
    # Explicitly the wildcard on a site worker: it would clash with both, so not added;
    # nothing removed.
    ({ANY}, SITE, (), None, None, ["portal_kept", "portal_kept", "portal_conflict"]),
    # An extra portal on another port is added beside the site's.
    (SITE | {Portal("10.252.1.10", 3261)}, SITE, (), {Portal("10.252.1.10", 3261)}, set(),
     []),
    # A portal sbps created and no longer wants goes; the site's stays.
    ({NMN}, SITE | {Portal("10.1.1.1")}, {Portal("10.1.1.1")}, set(),
     {Portal("10.1.1.1")}, ["portal_kept"]),
    # sbps's own wildcard is replaced by the configured addresses.
    (SITE, {ANY}, {ANY}, set(SITE), {ANY}, []),
])
def test_portals(configured: object, live: object, created: object, add: set[Portal] | None,
                 remove: set[Portal] | None, codes: list[str]) -> None:
    notes: list[Note] = []
    actions = portal_actions(frozenset(configured), ANY, frozenset(live),  # type: ignore
                             frozenset(created), notes)  # type: ignore[arg-type]
    if add is None:
        assert actions == []
    else:
        assert len(actions) == 1 and isinstance(actions[0], SetPortals)
        assert (actions[0].add, actions[0].remove) == (add, remove)
        assert actions[0].reason
    assert sorted(n.code for n in notes) == sorted(codes)


def test_default_configuration_on_a_field_worker_keeps_the_site_portals() -> None:
    """Negative control of the field failure: the old planner replaced them with 0.0.0.0."""
    t = replace(target((A, 10)), portals=SITE)
    p = plan(replace(inp((A,), t), portals=parse_portals((), 3260)))
    assert not any(isinstance(a, SetPortals) for a in p.actions)
    assert p.actions == () and p.notes == ()


def test_removal_never_names_a_portal_sbps_did_not_create() -> None:
    for live in (SITE, SITE | {ANY}):
        for created in (frozenset(), frozenset({ANY})):
            acts = portal_actions(frozenset({Portal("10.9.9.9")}), ANY, frozenset(live),
                                  created & live, [])
            for a in acts:
                assert isinstance(a, SetPortals) and a.remove <= created


def test_ledger_records_only_what_was_applied_and_forgets_what_is_gone(tmp_path: Path) -> None:
    ledger = PortalLedger(str(tmp_path))
    assert ledger.current(SITE) == frozenset()
    ledger.applied(SetPortals(add=frozenset({ANY}), reason="r"))
    assert PortalLedger(str(tmp_path)).created == {ANY}  # kept across restarts
    assert ledger.current(SITE | {ANY}) == {ANY}
    # Someone removed it by hand: forgotten, so a portal made later by someone else is
    # never taken for ours.
    assert ledger.current(SITE) == frozenset()
    assert ledger.current(SITE | {ANY}) == frozenset()
    (tmp_path / "portals.json").write_text("{not json")
    assert PortalLedger(str(tmp_path)).created == frozenset()


@pytest.mark.parametrize(("addresses", "portals", "missing"), [
    ({"nmn": "10.252.1.10", "hsn": "10.253.1.10"}, SITE, {}),
    ({"nmn": "10.252.1.10", "hsn": "10.253.1.10"}, {ANY}, {}),
    ({"nmn": "10.252.1.10", "hsn": "10.253.9.9"}, SITE, {"hsn": "10.253.9.9"}),
    ({"nmn": "10.252.1.10"}, set(), {"nmn": "10.252.1.10"}),
])
def test_a_records_must_name_a_portal(addresses: dict[str, str], portals: set[Portal],
                                      missing: dict[str, str]) -> None:
    assert unserved(addresses, portals) == missing


# LUN ids --------------------------------------------------------------------------------

FIELD = "/var/lib/cps-local/boot-images"


def field_target(*exports: tuple[object, int]) -> object:
    """A field worker's target: backstores on the s3fs path, adopted by sbps."""
    t = target(*exports)  # type: ignore[arg-type]
    stores = tuple(StorageObject(so.name, f"{FIELD}/{so.name}", so.size, so.serial,
                                 so.product_id) for so in t.storage_objects)
    return replace(t, storage_objects=stores)


def adopted(*imgs: object) -> frozenset[str]:
    return frozenset(i.identity.name for i in imgs)  # type: ignore[attr-defined]


def test_field_lun_0_claims_another_id_and_is_not_moved_yet() -> None:
    t = field_target((A, 0))
    p = plan(inp((A,), t, claims={}, candidates={A.identity.digest: 42},  # type: ignore
                 adopted=adopted(A)))
    assert p.actions == (ClaimLun(A.identity, 42, subject=A.identity.name,
                                  reason=p.actions[0].reason),)
    assert "LUN 0" in p.actions[0].reason


def test_field_lun_other_than_0_asks_for_its_own_number() -> None:
    t = field_target((A, 3))
    p = plan(inp((A,), t, claims={}, candidates={A.identity.digest: 42},  # type: ignore
                 adopted=adopted(A)))
    assert isinstance(p.actions[0], ClaimLun) and p.actions[0].lun_id == 3


def test_takeover_of_lun_0_step_by_step() -> None:
    """In use: exported at the claim beside LUN 0, which stays; idle for the grace: LUN 0
    goes; then (idle, staged) the backing moves to the cache at the claim."""
    claims = {A.identity.digest: 12}
    t = field_target((A, 0))
    step = dict(claims=claims, adopted=adopted(A), staged={})
    p = plan(inp((A,), t, **step))  # type: ignore[arg-type]
    assert p.actions[0] == CreateLun(Lun(12, A.identity.name), subject=A.identity.name,
                                     reason=p.actions[0].reason)
    assert kinds(p) == ["CreateLun", "StageImage"]
    assert not any(isinstance(a, DeleteLun) for a in p.actions)
    both = replace(t, luns=(Lun(0, A.identity.name), Lun(12, A.identity.name)))  # type: ignore
    i = inp((A,), both, **step)  # type: ignore[arg-type]
    assert moving(i) == {0: A.identity.name}
    busy = plan(i)
    assert kinds(busy) == ["StageImage"]
    assert [n.code for n in busy.notes] == ["lun_moving"]
    # Staged and idle for the adoption's quiet time, but LUN 0 not yet idle for the grace:
    # the backing waits (one image, one LUN first).
    waiting = plan(replace(i, staged={A.identity.digest: f"{CACHE}/x"},
                           switch_backing=adopted(A)))
    assert waiting.actions == ()
    due = plan(replace(i, move_due=frozenset({0})))
    assert kinds(due) == ["DeleteLun", "StageImage"]
    assert isinstance(due.actions[0], DeleteLun) and due.actions[0].index == 0
    at_claim = replace(t, luns=(Lun(12, A.identity.name),))  # type: ignore[arg-type]
    switch = plan(inp((A,), at_claim, claims=claims, adopted=adopted(A),
                      switch_backing=adopted(A)))
    assert kinds(switch) == ["DeleteLun", "DeleteStorageObject", "CreateStorageObject",
                             "CreateLun"]
    assert {a.index for a in switch.actions if isinstance(a, DeleteLun)} == {12}


def test_claimed_id_taken_by_another_image_keeps_the_field_lun() -> None:
    t = field_target((A, 0), (B, 12))
    p = plan(inp((A, B), t, claims={A.identity.digest: 12, B.identity.digest: 12},
                 adopted=adopted(A, B)))
    assert not any(isinstance(a, (CreateLun, DeleteLun)) for a in p.actions)
    assert "lun_disagreement" in [n.code for n in p.notes]


def test_a_foreign_lun_is_never_moving() -> None:
    """A backstore that is not ours (not in the cache, not adopted) never moves."""
    t = replace(field_target((A, 0)), luns=(Lun(0, A.identity.name),  # type: ignore
                                            Lun(12, A.identity.name)))
    assert moving(inp((A,), t, claims={A.identity.digest: 12})) == {}  # type: ignore


def test_moves_due_after_the_grace_and_not_while_read(tmp_path: Path) -> None:
    now = [1000.0]
    a = Adoption(str(tmp_path), CACHE, keep_backing=False, quiet=5, clock=lambda: now[0])
    mv = {0: A.identity.name}
    assert a.moves_due(mv, {0: LunStats(0, 10, 5)}, 30) == frozenset()
    now[0] += 29
    assert a.moves_due(mv, {0: LunStats(0, 10, 5)}, 30) == frozenset()
    now[0] += 2
    assert a.moves_due(mv, {0: LunStats(0, 10, 5)}, 30) == {0}
    # A read resets the clock (negative control of the rule above).
    assert a.moves_due(mv, {0: LunStats(0, 20, 6)}, 30) == frozenset()
    now[0] += 29
    assert a.moves_due(mv, {0: LunStats(0, 20, 6)}, 30) == frozenset()
    # The path checker's TEST UNIT READY does not count as use.
    now[0] += 2
    assert a.moves_due(mv, {0: LunStats(0, 20, 9, tur_commands=3)}, 30) == {0}


def test_so_for_is_a_cache_object() -> None:
    assert so_for(A).path.startswith(CACHE)
