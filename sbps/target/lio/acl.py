"""Node ACLs, mapped LUNs and CHAP on this worker's LIO TPG, through rtslib-fb.

Owns reading ACLs (``acls/<iqn>/{lun_<n>, auth/, tag}``) and TPG credentials (``auth/``)
into the model, and the ACL actions of the LIO backend. ACLs sbps makes carry the tag
``sbps``, so open mode can tell them from an admin's. Every mapping sbps makes is
write-protected: together with the TPG's ``demo_mode_write_protect=1`` no initiator can
write, whatever the access mode.

Must not: log or put into an error a CHAP secret (only user names), touch another TPG, or
write anything when the live value already equals the wanted one (a converged target sees
zero writes). Blocking; runs on the backend thread like the rest of ``sbps.target.lio.backend``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sbps.core.actions import CreateAcl, DeleteAcl, MapLun, SetAuth, UnmapLun
from sbps.core.errors import BackendError
from sbps.core.target_state import NO_CHAP, Chap, MappedLun, NodeAcl, Secret
from sbps.target.lio.plumbing import Dir, listdir, translated

log = logging.getLogger(__name__)

TAG = "sbps"
_AUTH_FILES = ("userid", "password", "userid_mutual", "password_mutual")
_MAPPED_ATTRS = frozenset({"write_protect", "statistics"})


def read_chap(node: Dir) -> Chap:
    """The credentials in ``auth/`` of a TPG or an ACL; "NULL" and empty mean unset."""
    values = []
    for name in _AUTH_FILES:
        value = node.read(f"auth/{name}") or ""
        values.append("" if value == "NULL" else value)
    user, secret, mutual_user, mutual_secret = values
    if not user:
        return NO_CHAP
    return Chap(user, Secret(secret) if secret else None, mutual_user,
                Secret(mutual_secret) if mutual_user and mutual_secret else None)


def read_acls(tpg: str) -> tuple[NodeAcl, ...]:
    """The node ACLs of the TPG at configfs directory ``tpg``."""
    lun_dir = os.path.normpath(os.path.join(tpg, "lun"))
    out = []
    for name in listdir(os.path.join(tpg, "acls")):
        path = os.path.join(tpg, "acls", name)
        acl = Dir.at(path)
        if acl is None:
            continue  # removed meanwhile
        luns = []
        with acl:
            for mapped_lun, mapped in acl.numbered("lun_"):
                link = mapped.link(_MAPPED_ATTRS)
                if link is None:
                    continue  # half-made by a killed process: MapLun finishes it
                target = os.path.normpath(os.path.join(mapped.path, link))
                if os.path.dirname(target) != lun_dir or not target[-1].isdigit():
                    continue
                wp = mapped.read("write_protect") == "1"
                luns.append(MappedLun(mapped_lun, int(os.path.basename(target)[4:]), wp))
            tag = acl.read("tag") or ""
            chap = read_chap(acl)
        out.append(NodeAcl(name, tuple(luns), chap, owned=tag == TAG))
    return tuple(out)


def create_acl(tpg: Any, iqn: str, action: CreateAcl) -> None:
    from rtslib_fb import NodeACL

    obj = f"{iqn}/tpg1/acls/{action.initiator}"
    with translated("create ACL", obj):
        acl = _acls(tpg).get(action.initiator) or NodeACL(tpg, action.initiator, "create")
        if str(acl.tag or "") != TAG:
            acl.tag = TAG


def delete_acl(tpg: Any, iqn: str, action: DeleteAcl) -> None:
    acl = _acls(tpg).get(action.initiator)
    if acl is not None:
        with translated("delete ACL", f"{iqn}/tpg1/acls/{action.initiator}"):
            acl.delete()


def map_lun(tpg: Any, iqn: str, action: MapLun) -> None:
    from rtslib_fb import LUN, MappedLUN

    acl, current, lun_obj = _mapped(tpg, iqn, action, "map LUN")
    with translated("map LUN", lun_obj):
        if current is not None and _points_at(current) != action.lun:
            current.delete()
            current = None
        if current is None:
            tpg_lun = next((lun for lun in tpg.luns if int(lun.lun) == action.lun), None)
            if tpg_lun is None:
                raise BackendError("map LUN", lun_obj, f"LUN {action.lun} does not exist")
            MappedLUN(acl, action.lun, LUN(tpg, action.lun), write_protect=True)
        elif not current.write_protect:
            current.write_protect = True


def unmap_lun(tpg: Any, iqn: str, action: UnmapLun) -> None:
    _acl, current, lun_obj = _mapped(tpg, iqn, action, "unmap LUN")
    if current is not None:
        with translated("unmap LUN", lun_obj):
            current.delete()


def _acls(tpg: Any) -> dict[str, Any]:
    return {acl.node_wwn: acl for acl in tpg.node_acls}


def _mapped(tpg: Any, iqn: str, action: MapLun | UnmapLun,
            operation: str) -> tuple[Any, Any, str]:
    """The ACL, its mapping numbered ``action.lun`` (or None), and that mapping's name."""
    obj = f"{iqn}/tpg1/acls/{action.initiator}"
    acl = _acls(tpg).get(action.initiator)
    if acl is None:
        raise BackendError(operation, obj, "the ACL does not exist")
    mapped = {m.mapped_lun: m for m in acl.mapped_luns}
    return acl, mapped.get(action.lun), f"{obj}/lun_{action.lun}"


def _points_at(mapped: Any) -> int | None:
    try:
        return int(mapped.tpg_lun.lun)
    except Exception:
        return None


def set_auth(tpg: Any, iqn: str, action: SetAuth) -> None:
    if action.initiator is None:
        path, obj = tpg.path, f"{iqn}/tpg1"
    else:
        path, obj = os.path.join(tpg.path, "acls", action.initiator), \
            f"{iqn}/tpg1/acls/{action.initiator}"
        if not os.path.isdir(path):
            raise BackendError("set CHAP", obj, "the ACL does not exist")
    with Dir(path) as node:
        chap, live = action.chap, read_chap(node)
    pairs = ((chap.user, live.user), (chap.secret, live.secret),
             (chap.mutual_user, live.mutual_user), (chap.mutual_secret, live.mutual_secret))
    for name, (want, have) in zip(_AUTH_FILES, pairs, strict=True):
        if want == have or (not want and not have):
            continue
        value = want.reveal() if isinstance(want, Secret) else want
        # Written directly: rtslib swallows errors on the TPG's auth files. "NULL" unsets,
        # as the kernel expects. Errors name the file, never the value.
        with translated("set CHAP", f"{obj}/auth/{name}"), \
                open(os.path.join(path, "auth", name), "w") as f:
            f.write(value or "NULL")
    log.info("CHAP set: %s", chap.describe(), extra={"iqn": action.initiator or iqn})
