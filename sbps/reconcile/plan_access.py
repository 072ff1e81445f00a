"""The access part of the planner: node ACLs, mapped LUNs and CHAP, as pure functions.

Called by ``sbps.reconcile.plan`` only; imports only the model modules. Must not do I/O, read clocks or
keep state, and must not see a secret other than as ``target_state.Secret`` (compared, never shown).

Rules:
- ``open``: generated ACLs; CHAP (if any) on the TPG. Explicit ACLs sbps made earlier (in
  ``acl`` mode) are deleted, since they would confine their initiators to the LUNs mapped
  then; an ACL sbps did not make is reported and left alone.
- ``acl``: exactly the ACLs of the access spec, each mapping only the LUNs of the images its
  initiator may read, at the number equal to the LUN id, write-protected. Every ACL of this
  worker's TPG is sbps's in this mode: an initiator that lost access loses its ACL at once,
  and a mapping of an image that changed tenant goes at once.
- A LUN whose image is retiring keeps its mappings until its removal is due, so booted nodes
  are never cut off; when it is due, it is unmapped first (subject = its backstore, so the
  LUN is not deleted if unmapping fails).
"""

from __future__ import annotations

from collections.abc import Mapping

from sbps.core.actions import Action, CreateAcl, DeleteAcl, MapLun, Note, SetAuth, UnmapLun
from sbps.core.target_state import AccessMode, AccessSpec, AclSpec, NodeAcl, TargetState


def tpg_auth_actions(spec: AccessSpec, target: TargetState) -> list[Action]:
    """CHAP on the TPG (generated ACLs; the target account on tgt). Comes before the TPG
    attributes so that ``authentication=1`` never finds the target without credentials."""
    if target.chap == spec.chap:
        return []
    return [SetAuth(None, spec.chap, subject="tpg auth",
                    reason=f"TPG credentials differ from the access policy ({spec.chap.describe()})")]


def acl_actions(spec: AccessSpec, target: TargetState, exported: Mapping[str, int],
                recreated: frozenset[int], kept: frozenset[int], due: Mapping[int, str],
                notes: list[Note]) -> list[Action]:
    """ACL actions for this pass.

    ``exported``: backstore name -> LUN id once this plan's image actions ran;
    ``recreated``: LUN ids this plan deletes and creates again (their mappings go with them);
    ``kept``: LUN ids of retiring images that stay for now (mappings kept);
    ``due``: LUN id -> backstore of retiring images this plan removes (unmapped first).
    """
    current = target.acl_by_initiator()
    out: list[Action] = []
    if spec.mode is AccessMode.OPEN:
        for initiator, acl in sorted(current.items()):
            if acl.owned:
                out.append(DeleteAcl(initiator, subject=_subject(initiator),
                                     reason="access is open: generated ACLs serve every "
                                     "initiator; this ACL would confine it to old mappings"))
            else:
                notes.append(Note(_subject(initiator), "foreign_acl", "explicit ACL not made "
                                  "by sbps: this initiator sees only its mapped LUNs; left "
                                  "alone"))
        return out
    wanted = {s.initiator: s for s in spec.acls}
    for initiator in sorted(current.keys() - wanted.keys()):
        out.append(DeleteAcl(initiator, subject=_subject(initiator),
                             reason="the access policy no longer allows this initiator"))
    for initiator in sorted(wanted):
        out += _one_acl(wanted[initiator], current.get(initiator), exported, recreated, kept,
                        due)
    return out


def _one_acl(want: AclSpec, acl: NodeAcl | None, exported: Mapping[str, int],
             recreated: frozenset[int], kept: frozenset[int],
             due: Mapping[int, str]) -> list[Action]:
    who = want.initiator
    subject = _subject(who)
    out: list[Action] = []
    if acl is None:
        out.append(CreateAcl(who, subject=subject, reason="the access policy allows this "
                             "initiator"))
        acl = NodeAcl(who)
    if acl.chap != want.chap:
        out.append(SetAuth(who, want.chap, subject=subject, reason="ACL credentials differ "
                           f"from the access policy ({want.chap.describe()})"))
    mapped = {i: m for i, m in acl.mapped().items() if m.tpg_lun not in recreated}
    lun_ids = {exported[name] for name in want.images if name in exported}
    for index, m in sorted(mapped.items()):
        if index in lun_ids:
            if m.tpg_lun != index:
                # Mapped LUN number == LUN id: a mapping elsewhere is redone.
                out.append(UnmapLun(who, index, subject=subject, reason=f"mapped LUN {index} "
                                    f"points at LUN {m.tpg_lun}, not its own number"))
                mapped.pop(index)
            continue
        if m.tpg_lun in due:
            out.append(UnmapLun(who, index, subject=due[m.tpg_lun], reason="its image is "
                                "retired: unmapped before the LUN goes"))
        elif m.tpg_lun in kept and m.tpg_lun == index:
            continue  # a retiring image: booted nodes keep reading it until it is due
        else:
            out.append(UnmapLun(who, index, subject=subject, reason="the access policy does "
                                "not let this initiator read it"))
    # Subject = the image: a LUN that failed to appear skips its own mappings only.
    name_of = {lun_id: name for name, lun_id in exported.items()}
    for index in sorted(lun_ids):
        have = mapped.get(index)
        if have is None:
            out.append(MapLun(who, index, subject=name_of[index], reason="an image this "
                              "initiator may read"))
        elif not have.write_protect:
            out.append(MapLun(who, index, subject=name_of[index], reason="mapped writable: "
                              "write-protect it"))
    return out


def _subject(initiator: str) -> str:
    return f"acl {initiator}"
