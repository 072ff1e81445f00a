"""The planner: a pure function from desired and actual state to a Plan.

Imports only the model modules (model, target_state, actions), sbps.reconcile.plan_access (node
ACLs, mapped LUNs, CHAP) and sbps.reconcile.plan_portals. Every action carries its reason; whatever plan() notices and
deliberately leaves alone (a foreign object, an occupied LUN id, a retiring LUN still in
use) becomes a Note. Must not do I/O, read clocks or keep state: the reconciler passes in
everything time-dependent (which retiring LUNs may go now).

Safety rules enforced here:
- never touch an object sbps does not own (backed outside the cache, not adopted);
- never export what is not staged and verified;
- never move a LUN in use: an image is exported at its claimed id; a LUN at another id
  (the field agent's numbering) stays beside it until idle for the grace period; an
  occupied id is a conflict to report, not to resolve by removal;
- remove a LUN only when the reconciler says its retirement is due (idle past the grace,
  forced by an admin, or past the maximum wait); a desired image is never removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sbps.core.actions import (
    Action,
    ClaimLun,
    CreateLun,
    CreateStorageObject,
    CreateTarget,
    DeleteLun,
    DeleteStorageObject,
    Note,
    Plan,
    ReleaseClaim,
    SetTpgAttributes,
    SetTpgEnabled,
    StageImage,
)
from sbps.core.model import CacheDir, DesiredImage, backstore_name
from sbps.core.target_state import AccessSpec, Lun, Portal, StorageObject, TargetState
from sbps.reconcile.plan_access import acl_actions, tpg_auth_actions
from sbps.reconcile.plan_portals import portal_actions


@dataclass(frozen=True)
class PlanInput:
    """Everything plan() looks at, as values. Keys named ``digest`` are identity digests;
    keys named ``name`` are backstore names (``identity.name``)."""

    desired: tuple[DesiredImage, ...]
    target: TargetState
    cache_dir: str
    staged: Mapping[str, str] = field(default_factory=dict)
    """digest -> path of its verified cache file."""
    claims: Mapping[str, int] = field(default_factory=dict)
    """digest -> claimed LUN id."""
    candidates: Mapping[str, int] = field(default_factory=dict)
    """digest -> the id a claim would ask for first (shown by ``sbpsctl plan``)."""
    blocked: frozenset[str] = frozenset()
    """digests not to stage now: staging in progress, or failed and backing off."""
    adopted: frozenset[str] = frozenset()
    """names of field-agent backstores adopted for a desired image."""
    switch_backing: frozenset[str] = frozenset()
    """adopted names whose LUN is idle now, so their backing may move to the cache."""
    move_due: frozenset[int] = frozenset()
    """LUN ids of ``moving()`` idle for the grace period: they may go now."""
    retire_due: frozenset[str] = frozenset()
    """names of retiring backstores whose removal is due now."""
    replace: frozenset[str] = frozenset()
    """names of desired backstores an admin promoted: remove the old export first."""
    serve: bool = True
    portals: frozenset[Portal] = frozenset()
    """``target.portals``; empty: keep the TPG's portals (see sbps.reconcile.plan_portals)."""
    default_portal: Portal = Portal("0.0.0.0")
    """The portal a TPG with none gets when ``portals`` is empty."""
    own_portals: frozenset[Portal] = frozenset()
    """The TPG's portals that sbps created (the others are never removed)."""
    attributes: tuple[tuple[str, str], ...] = ()
    access: AccessSpec = field(default_factory=AccessSpec)
    """Node ACLs and CHAP the access policy wants (see sbps.reconcile.plan_access)."""


def owned(so: StorageObject, cache_dir: str, adopted: frozenset[str]) -> bool:
    """A backstore is ours when it is backed by a file in our cache, or adopted."""
    return CacheDir(cache_dir).holds(so.path) or so.name in adopted


def retiring(inp: PlanInput) -> frozenset[str]:
    """Names of our backstores that no desired image wants: they are retiring."""
    wanted = {img.identity.name for img in inp.desired}
    return frozenset(so.name for so in inp.target.storage_objects
                     if owned(so, inp.cache_dir, inp.adopted) and so.name not in wanted)


def plan(inp: PlanInput) -> Plan:
    actions: list[Action] = []
    notes: list[Note] = []
    t = inp.target
    if not t.exists:
        actions.append(CreateTarget(t.iqn, reason="this worker's target does not exist"))
    actions += portal_actions(inp.portals, inp.default_portal, t.portals, inp.own_portals,
                              notes)
    actions += tpg_auth_actions(inp.access, t)
    current = dict(t.attributes)
    if any(current.get(k) != v for k, v in inp.attributes):
        actions.append(SetTpgAttributes(inp.attributes, reason="TPG attributes differ "
                                        "from the access policy (read-only, ACL mode)"))
    for name in t.foreign:
        if name not in inp.adopted:
            notes.append(Note(name, "foreign", "not owned by sbps; left alone"))

    lun_of: dict[str, list[int]] = {}
    for lun in t.luns:
        lun_of.setdefault(lun.storage_object, []).append(lun.index)
    by_index = t.lun_by_index()
    stores = t.storage_by_name()
    seen: set[str] = set()
    for img in sorted(inp.desired, key=lambda i: i.identity.digest):
        if img.identity.name in seen:
            notes.append(Note(img.identity.name, "duplicate", f"{img.identity.key} is "
                              "desired twice; the first entry is used"))
            continue
        seen.add(img.identity.name)
        if img.identity.name in inp.replace and img.identity.name in stores:
            why = "promoted: the old version leaves before the new one is exported"
            name = img.identity.name
            actions += [DeleteLun(i, reason=why, subject=name)
                        for i in sorted(lun_of.get(name, []))]
            actions.append(DeleteStorageObject(name, reason=why, subject=name))
            continue
        actions += _image_actions(inp, img, stores, by_index, lun_of, notes)

    kept: set[int] = set()
    due: dict[int, str] = {}
    retire: list[Action] = []
    for name in sorted(retiring(inp)):
        indexes = sorted(lun_of.get(name, []))
        if name not in inp.retire_due:
            kept.update(indexes)
            notes.append(Note(name, "retiring", "kept until its LUN has been idle for the "
                              "grace period, or an admin forces it"))
            continue
        due.update((i, name) for i in indexes)
        reason = "retired: no longer desired and its LUN is idle, forced or past max wait"
        retire += [DeleteLun(i, reason=reason, subject=name) for i in indexes]
        retire.append(DeleteStorageObject(name, reason=reason, subject=name))
        for digest, lun_id in sorted(inp.claims.items()):
            if backstore_name(digest) == name:
                retire.append(ReleaseClaim(digest, lun_id, subject=name,
                                           reason="its LUN was removed"))
    exported, recreated = _exports_after(t, actions)
    actions += acl_actions(inp.access, t, exported, frozenset(recreated), frozenset(kept),
                           due, notes)
    actions += retire

    if t.tpg_enabled != inp.serve:
        actions.append(SetTpgEnabled(inp.serve, reason="the node gate is "
                                     + ("open" if inp.serve else "closed")))
    return Plan(tuple(actions), tuple(notes))


def _exports_after(t: TargetState, actions: list[Action]) -> tuple[dict[str, int], set[int]]:
    """Backstore name -> LUN id once ``actions`` ran, and the ids they delete and create
    again (switching an adopted LUN's backing)."""
    by_index = {lun.index: lun.storage_object for lun in t.luns}
    deleted = {a.index for a in actions if isinstance(a, DeleteLun)}
    created = {a.lun.index: a.lun.storage_object for a in actions if isinstance(a, CreateLun)}
    for index in deleted:
        by_index.pop(index, None)
    by_index.update(created)
    exported: dict[str, int] = {}
    for index, name in sorted(by_index.items(), reverse=True):
        exported[name] = index  # the lowest id wins when a name has several
    return exported, deleted & created.keys()


def _image_actions(inp: PlanInput, img: DesiredImage, stores: Mapping[str, StorageObject],
                   by_index: Mapping[int, Lun], lun_of: Mapping[str, list[int]],
                   notes: list[Note]) -> list[Action]:
    ident = img.identity
    name = ident.name
    existing = stores.get(name)
    indexes = sorted(lun_of.get(name, []))
    claim = inp.claims.get(ident.digest)
    if claim is None:
        numbered = [i for i in indexes if i >= 1]
        if numbered:
            # An exported LUN keeps its number when it can: ask for what it already has.
            return [ClaimLun(ident, numbered[0], subject=name,
                             reason=f"LUN {numbered[0]} is exported without a claim")]
        return [ClaimLun(ident, inp.candidates.get(ident.digest, 0), subject=name,
                         reason="LUN 0 is exported without a claim and LUN 0 is never "
                         "claimed: a new id (the image moves there once LUN 0 is idle)"
                         if indexes else "new image needs a LUN id")]
    if existing is not None and existing.serial != ident.serial:
        notes.append(Note(name, "identity_conflict", f"backstore {name} has serial "
                          f"{existing.serial}, expected {ident.serial}; left alone"))
        return []
    # Exported at other ids than its claim (the field agent's LUNs, numbered per worker
    # from 0): also export at the claim; each other id goes once idle for the grace.
    moves, pending = _moves(inp, name, claim, indexes, by_index, notes)
    if moves is None:
        return []
    out: list[Action] = moves
    path = inp.staged.get(ident.digest)
    if path is None:
        # An adopted LUN keeps serving from its old backing while the cache copy is made.
        if ident.digest in inp.blocked:
            return out
        return [*out, StageImage(img, subject=name, reason="not in the verified cache")]
    if existing is not None and indexes:
        if not pending and existing.path != path and name in inp.switch_backing:
            why = "adopted LUN is idle: move it to the verified cache copy"
            return [DeleteLun(claim, reason=why, subject=name),
                    DeleteStorageObject(name, reason=why, subject=name),
                    _create_so(name, img, path, why), CreateLun(Lun(claim, name),
                                                                 reason=why, subject=name)]
        return out
    occupant = by_index.get(claim)
    if occupant is not None and occupant.storage_object != name:
        notes.append(Note(name, "lun_conflict", f"LUN {claim} is taken by "
                          f"{occupant.storage_object}; not exported"))
        return []
    if existing is None:
        assert path is not None
        out.append(_create_so(name, img, path, "staged and verified"))
    out.append(CreateLun(Lun(claim, name), subject=name, reason=f"export at claimed "
                         f"LUN {claim}"))
    return out


def _moves(inp: PlanInput, name: str, claim: int, indexes: list[int],
           by_index: Mapping[int, Lun], notes: list[Note]) -> tuple[list[Action] | None, bool]:
    """The actions that bring an exported image to its claimed id without a LUN in use
    ever disappearing: export at the claim beside the old ids, then remove each old id once
    it has been idle for the grace (``inp.move_due``). None: nothing may happen now. The
    flag says whether the image still has other ids than its claim."""
    others = [i for i in indexes if i != claim]
    if not indexes or not others:
        return [], False
    listed = ", ".join(map(str, others))
    if claim not in indexes:
        occupant = by_index.get(claim)
        if occupant is not None:
            notes.append(Note(name, "lun_disagreement", f"exported at LUN {listed} but "
                              f"claimed as {claim}, which {occupant.storage_object} holds; "
                              "the exported LUN keeps its number"))
            return None, True
        return [CreateLun(Lun(claim, name), subject=name,
                          reason=f"export also at its claimed LUN {claim}; LUN {listed} "
                          "keeps serving until idle for the grace period")], True
    out: list[Action] = []
    for i in others:
        if i in inp.move_due:
            out.append(DeleteLun(i, subject=name, reason=f"LUN {i} idle for the grace "
                                 f"period: the image stays at its claimed LUN {claim}"))
        else:
            notes.append(Note(name, "lun_moving", f"also exported at LUN {i} while that "
                              f"LUN is in use; removed once idle (claimed LUN: {claim})"))
    return out, True


def moving(inp: PlanInput) -> dict[int, str]:
    """LUN id -> backstore name of our desired images' LUNs at other ids than their claim,
    while the claim is exported too: each may go once idle (``PlanInput.move_due``)."""
    claims = {img.identity.name: inp.claims[img.identity.digest] for img in inp.desired
              if img.identity.digest in inp.claims}
    names = {lun.index: lun.storage_object for lun in inp.target.luns}
    stores = inp.target.storage_by_name()
    out = {}
    for index, name in names.items():
        claim = claims.get(name)
        so = stores.get(name)
        if claim is None or index == claim or names.get(claim) != name or so is None \
                or not owned(so, inp.cache_dir, inp.adopted):
            continue
        out[index] = name
    return out


def _create_so(name: str, img: DesiredImage, path: str, reason: str) -> CreateStorageObject:
    ident = img.identity
    so = StorageObject(name=name, path=path, size=img.source.size, serial=ident.serial,
                       product_id=ident.product_id)
    return CreateStorageObject(so, subject=name, reason=reason)
