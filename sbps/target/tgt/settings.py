"""Target-wide settings on tgt: creating this worker's target, its state, tgtd's portals,
and LIO's TPG attributes as tgt can express them, for ``sbps.target.tgt.backend``.

Owns the mapping of the target-wide actions (``CreateTarget``, ``SetTpgEnabled``,
``SetPortals``, ``SetTpgAttributes``) onto ``tgtadm``; the backend finds the target (or
says it is missing) and dispatches. Node ACLs and CHAP are ``sbps.target.tgt.access``.
- ``SetTpgEnabled`` sets the target state ``ready``/``offline`` (offline refuses logins);
  a new target starts offline with no ACL.
- Portals are global in tgtd (``--mode portal``), shared with any other target.
- TPG attributes are reported in LIO's words, derived from tgt state
  (``mapping.attributes``): ``generate_node_acls`` and ``cache_dynamic_acls`` are 1 when
  the ACL holds ``ALL`` (setting 1 binds ``ALL``, setting 0 unbinds it);
  ``demo_mode_write_protect`` is 1 when every marked LUN is read-only; ``authentication``
  is 1 when a CHAP account is bound (``SetAuth`` binds it; setting the attribute to 1 only
  checks that it is there).

Must not touch a target other than the one it is given, make a LUN writable, or log a
secret. Blocking: every call runs ``tgtadm``.
"""

from __future__ import annotations

import logging

from sbps.core.actions import SetAuth
from sbps.core.errors import BackendError
from sbps.core.target_state import Chap, Portal
from sbps.target.tgt.access import TgtAccess
from sbps.target.tgt.mapping import acl_args, data_luns, marked
from sbps.target.tgt.tgtadm import Tgtadm, TgtTarget

log = logging.getLogger(__name__)


def create_target(tgtadm: Tgtadm, iqn: str) -> None:
    """Create ``iqn`` at the lowest free tid, offline, unless it is there already."""
    targets = tgtadm.show()
    if any(t.name == iqn for t in targets):
        return
    tid = min(set(range(1, len(targets) + 2)) - {t.tid for t in targets})
    tgtadm(["--mode", "target", "--op", "new", "--tid", str(tid), "--targetname", iqn],
           operation="create target", obj=iqn)
    try:
        # Like a new LIO TPG: refuse logins until the plan enables it.
        tgtadm(["--mode", "target", "--op", "update", "--tid", str(tid), "--name", "state",
                "--value", "offline"], operation="create target", obj=iqn)
    except BackendError:
        tgtadm(["--mode", "target", "--op", "delete", "--tid", str(tid)],
               operation="delete target", obj=iqn)
        raise
    log.info("created target %s as tid %d", iqn, tid, extra={"iqn": iqn})


def set_enabled(tgtadm: Tgtadm, target: TgtTarget, enabled: bool) -> None:
    """``ready`` accepts logins, ``offline`` refuses them (sessions already in stay)."""
    state = "ready" if enabled else "offline"
    tgtadm(["--mode", "target", "--op", "update", "--tid", str(target.tid), "--name",
            "state", "--value", state], operation="enable", obj=target.name)


def set_portals(tgtadm: Tgtadm, add: frozenset[Portal], remove: frozenset[Portal]) -> None:
    """tgtd's portals are global, shared with any other target: add ``add`` and remove
    ``remove`` (portals sbps created), leaving every other portal as it is."""
    current = set(tgtadm.portals())
    for portal in sorted(str(p) for p in remove):
        if portal in current:
            tgtadm(["--mode", "portal", "--op", "delete", "--param", f"portal={portal}"],
                   operation="remove portal", obj=portal)
    for portal in sorted(str(p) for p in add):
        if portal not in current:
            tgtadm(["--mode", "portal", "--op", "new", "--param", f"portal={portal}"],
                   operation="add portal", obj=portal)


def set_attribute(tgtadm: Tgtadm, access: TgtAccess, target: TgtTarget, key: str,
                  value: str) -> None:
    """One TPG attribute in LIO's words, on ``target`` as tgtd has it now (see
    ``mapping.attributes`` for how each reads back)."""
    tid = str(target.tid)
    if key == "generate_node_acls":
        # ALL is tgt's generated ACL; named initiators are CreateAcl/DeleteAcl's.
        if (value == "1") != ("ALL" in target.acl):
            op = "bind" if value == "1" else "unbind"
            tgtadm(["--mode", "target", "--op", op, "--tid", tid, *acl_args("ALL")],
                   operation=op, obj="ALL")
    elif key in ("demo_mode_write_protect", "prod_mode_write_protect"):
        if value != "1":
            raise BackendError("set attribute", target.name, "sbps LUNs are always "
                               "read-only", code="config")
        for lu in data_luns(target):
            if marked(lu) and not lu.readonly:
                tgtadm(["--mode", "logicalunit", "--op", "update", "--tid", tid, "--lun",
                        str(lu.index), "--params", "readonly=1"],
                       operation="set read-only", obj=f"LUN {lu.index}")
    elif key == "authentication":
        # Accounts are bound by SetAuth (planned first); here only the two must agree.
        if value == "1" and not target.accounts:
            raise BackendError("set attribute", target.name, "authentication=1 needs a CHAP "
                               "account bound to the target (SetAuth)", code="config")
        if value == "0" and target.accounts:
            access.set_auth(target, SetAuth(None, Chap(), reason="authentication=0"))
    # cache_dynamic_acls has no tgt equivalent: it follows generate_node_acls.
