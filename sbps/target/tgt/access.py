"""Access control on tgt: initiator ACLs and CHAP accounts of this worker's target.

Owns mapping the model's node ACLs and CHAP onto what tgt can do, for ``sbps.target.tgt.backend``:
- tgt's ACL is per *target*: a list of initiator names or addresses bound to it (``ALL`` for
  anyone). There is no LUN masking per initiator: every bound initiator sees every LUN. So
  a node ACL is a bound name, it reports every sbps LUN as mapped (write-protected when the
  LUN is read-only), ``MapLun`` only checks (and makes read-only) the LUN, and ``UnmapLun``
  does nothing (the planner emits it on tgt only before the LUN itself is deleted). Per-
  tenant restriction is therefore impossible on tgt; configuration refuses tenants there.
- CHAP is per target too: one incoming account (one-way) and one outgoing account (mutual).
  ``SetAuth`` for an ACL succeeds only when it asks for the target's credentials. tgt cannot
  print a secret back, so the backend remembers what it set; after a restart of sbps (tgtd
  still running) the secret reads as unknown and the next pass sets it once more.

Must not log or put into an error a secret, nor pass one to a process: accounts are created
over tgtd's management socket (``Tgtadm.new_account``), never with ``tgtadm --password``,
whose arguments any user can read in ``/proc``; errors name only the account. Must not touch
accounts of other targets beyond unbinding ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sbps.core.actions import CreateAcl, DeleteAcl, MapLun, SetAuth, UnmapLun
from sbps.core.errors import BackendError
from sbps.core.target_state import NO_CHAP, Chap, MappedLun, NodeAcl
from sbps.target.tgt.mapping import acl_args, data_luns, marked
from sbps.target.tgt.tgtadm import Tgtadm, TgtTarget

log = logging.getLogger(__name__)
Run = Callable[[list[str], str, str], str]


class TgtAccess:
    """ACLs and CHAP of one tgt target; remembers the credentials it set (see above)."""

    def __init__(self, iqn: str, tgtadm: Tgtadm, run: Run) -> None:
        self.iqn = iqn
        self.tgtadm = tgtadm
        self.run = run
        self._set: Chap = NO_CHAP

    def chap(self, target: TgtTarget) -> Chap:
        if not target.accounts:
            return NO_CHAP
        user = target.accounts[0]
        mutual = target.outgoing[0] if target.outgoing else ""
        known = self._set
        if (known.user, known.mutual_user) == (user, mutual) and len(target.accounts) == 1:
            return known
        return Chap(user, None, mutual, None)

    def acls(self, target: TgtTarget) -> tuple[NodeAcl, ...]:
        luns = tuple(MappedLun(lu.index, lu.index, lu.readonly) for lu in data_luns(target)
                     if marked(lu))
        chap = self.chap(target)
        return tuple(NodeAcl(entry, luns, chap, owned=True) for entry in sorted(target.acl)
                     if entry != "ALL")

    def create_acl(self, target: TgtTarget, action: CreateAcl) -> None:
        if action.initiator not in target.acl:
            self.run(["--mode", "target", "--op", "bind", "--tid", str(target.tid),
                      *acl_args(action.initiator)], "bind", action.initiator)

    def delete_acl(self, target: TgtTarget, action: DeleteAcl) -> None:
        if action.initiator in target.acl:
            self.run(["--mode", "target", "--op", "unbind", "--tid", str(target.tid),
                      *acl_args(action.initiator)], "unbind", action.initiator)

    def map_lun(self, target: TgtTarget, action: MapLun) -> None:
        lu = next((lu for lu in data_luns(target) if lu.index == action.lun), None)
        if lu is None or not marked(lu):
            raise BackendError("map LUN", f"LUN {action.lun}", "no sbps LUN with that "
                               "number on the target")
        if not lu.readonly:
            self.run(["--mode", "logicalunit", "--op", "update", "--tid", str(target.tid),
                      "--lun", str(lu.index), "--params", "readonly=1"], "set read-only",
                     f"LUN {lu.index}")

    def unmap_lun(self, target: TgtTarget, action: UnmapLun) -> None:
        log.debug("tgt shows every LUN to every bound initiator: nothing to unmap",
                  extra={"iqn": action.initiator, "lun": action.lun})

    def set_auth(self, target: TgtTarget, action: SetAuth) -> None:
        if action.initiator is None:
            self._set_target_chap(target, action.chap)
        elif action.chap != self._set or self.chap(target) != action.chap:
            raise BackendError("set CHAP", action.initiator, "tgt has CHAP per target only: "
                               "an initiator cannot have credentials of its own",
                               code="config")

    def _set_target_chap(self, target: TgtTarget, chap: Chap) -> None:
        tid = str(target.tid)
        for user in target.accounts:
            self.run(["--mode", "account", "--op", "unbind", "--tid", tid, "--user", user],
                     "unbind account", user)
        for user in target.outgoing:
            self.run(["--mode", "account", "--op", "unbind", "--tid", tid, "--user", user,
                      "--outgoing"], "unbind account", user)
        self._set = NO_CHAP
        if not chap.enabled:
            return
        pairs = [(chap.user, chap.secret, False)]
        if chap.mutual:
            pairs.append((chap.mutual_user, chap.mutual_secret, True))
        existing = set(self.tgtadm.accounts())
        for user, secret, outgoing in pairs:
            if secret is None:
                raise BackendError("set CHAP", user, "no secret to set")
            if user in existing:
                # The secret cannot be read back: re-create the account to apply it.
                self.run(["--mode", "account", "--op", "delete", "--user", user],
                         "delete account", user)
            self.tgtadm.new_account(user, secret.reveal(), operation="create account", obj=user)
            self.run(["--mode", "account", "--op", "bind", "--tid", tid, "--user", user,
                      *(["--outgoing"] if outgoing else [])], "bind account", user)
        self._set = chap
        log.info("CHAP set: %s", chap.describe(), extra={"iqn": self.iqn})
