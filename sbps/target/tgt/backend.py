"""The ``tgt`` target backend: Debian's userspace ``tgtd``, driven through ``tgtadm``.

Owns the mapping of sbps's target model onto tgt. Must not touch targets other than this
worker's IQN (they are reported as foreign), must not log CHAP secrets, and must not be
called from the event loop (every call runs ``tgtadm``, blocking).

Mapping (tgt has no storage objects separate from LUNs):
- A *storage object* exists while a LUN backed by its file exists. ``CreateStorageObject``
  validates the file and keeps the object in memory; ``CreateLun`` realises it as a tgt LUN
  (``--op new``, then ``--op update --params``: tgt ignores parameters on new): read-only,
  vendor ``LIO-ORG``, product id = the backstore name (digest[:15]), ``scsi_sn`` = the
  serial (digest[:31]), ``scsi_id`` = ``6001405`` + serial[:25] (tgt then presents LIO's
  WWID, see ``sbps.target.tgt.mapping``). tgt opens a backing file read-write and
  read-only is a flag of the LUN, so a LUN made with its file is writable until the update.
  The LUN is therefore made *without* a file, which tgt makes removable, offline and of
  capacity 0 (NOT READY; even after an initiator's START STOP UNIT every block is out of
  range), and the update sets ``readonly=1``, then the identity, then ``path=`` last, which
  brings it online: tgt applies one request's parameters in order, between two SCSI
  commands (usr/spc.c ``lu_config``). A scan in between sees an empty removable disk, never
  a writable one. If the update fails the LUN is deleted again.
  ``DeleteStorageObject`` drops the pending object and any LUN still backed by it.
- ``read()`` names a LUN's storage object ``scsi_sn[:15]`` when the LUN carries our mark
  (``sbps.target.tgt.mapping.marked``), otherwise ``tgt-lun<N>``; the planner decides ownership
  by backing path, as for LIO. tgt does not print vendor or product id back: ``read()``
  reports ``LIO-ORG`` and the name, which is what ``CreateLun`` set.
- TPG attributes are reported in LIO's words, derived from tgt state: ``generate_node_acls``
  and ``cache_dynamic_acls`` are 1 when the ACL holds ``ALL`` (setting 1 binds ``ALL``,
  setting 0 unbinds it); ``demo_mode_write_protect`` is 1 when every marked LUN is
  read-only; ``authentication`` is 1 when a CHAP account is bound (``SetAuth`` binds it;
  setting the attribute to 1 only checks that it is there). ``SetTpgEnabled`` sets the
  target state ``ready``/``offline`` (offline refuses logins); a new target starts offline
  with no ACL.
- Node ACLs are initiator names (or addresses) bound to the target, and CHAP is per target;
  there is no LUN masking per initiator: see ``sbps.target.tgt.access``.
- Portals are global in tgtd (``--mode portal``), shared with any other target.
- ``commit()`` does nothing: tgtd keeps no configuration across restarts, and the
  reconciler rebuilds the target from the verified cache on its first pass.

Limits the field must know: tgt pads the serial in VPD 0x80 to 36 characters and adds a
local NAA and a T10 designator of its own to VPD 0x83 (the WWID Linux and multipath derive
is the NAA-6 one, ``36001405`` + serial[:25], the same as LIO's). tgt reports no target
port groups (no ALUA), so a fleet should still not mix backends under one multipath map. LUN 0 is tgt's controller LUN and is never used. tgt reports ids above 255 in
flat space, so an initiator addresses LUN N > 255 as 16384 + N (and 16384 aliases LUN 0);
configuration caps ``lun_max`` at 255 for tgt.

Deleting a LUN while an initiator is logged in succeeds at once; the session stays up and
its later commands to that LUN fail with ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED. That
is why the planner removes only idle retiring LUNs.

Statistics: tgt 1.0.85 counts completed reads and writes per LUN *and session*, and drops
a session's row when it logs out. ``stats()`` keeps the last value of every session in
memory and adds it to the LUN's total when the session goes, so the counters never fall
while the backend object lives. Bytes read come from the kernel's count for the LUN's own
I/O threads instead (``tgt_iostat``), which sees sessions that came and went between two
readings; LUNs whose threads it does not know keep the session sum. tgt does not count other commands (TEST UNIT READY,
INQUIRY), so ``commands`` is reads plus writes and ``tur_commands`` is 0: idle detection
watches bytes read and data commands.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sbps.core.actions import (
    Action,
    CreateAcl,
    CreateLun,
    CreateStorageObject,
    CreateTarget,
    DeleteAcl,
    DeleteLun,
    DeleteStorageObject,
    MapLun,
    SetAuth,
    SetPortals,
    SetTpgAttributes,
    SetTpgEnabled,
    UnmapLun,
)
from sbps.core.errors import BackendError
from sbps.core.model import VENDOR
from sbps.core.target_state import Chap, Lun, LunStats, Portal, StorageObject, TargetState
from sbps.target.tgt.access import TgtAccess
from sbps.target.tgt.iostat import IoThreads
from sbps.target.tgt.mapping import (
    Counters,
    acl_args,
    attributes,
    checked,
    data_luns,
    half_made,
    lun_name,
    lun_size,
    marked,
    parse_portal,
    scsi_id,
    storage_of,
)
from sbps.target.tgt.tgtadm import Tgtadm, TgtTarget

if TYPE_CHECKING:
    from sbps.config.schema import Config

log = logging.getLogger(__name__)

_FLAT_SPACE = 16383


class TgtBackend:
    """A ``TargetBackend`` over one tgtd. One instance per worker target."""

    name = "tgt"

    def __init__(self, iqn: str, tgtadm: Tgtadm, iostat: IoThreads | None = None) -> None:
        self.iqn = iqn
        self.tgtadm = tgtadm
        self.iostat = iostat
        self.access = TgtAccess(iqn, tgtadm, lambda args, op, obj: self._run(args, op, obj))
        self._pending: dict[str, StorageObject] = {}
        self._counters = Counters()

    # Reading ------------------------------------------------------------------------

    def _ours(self) -> tuple[TgtTarget | None, tuple[TgtTarget, ...]]:
        targets = self.tgtadm.show()
        ours = next((t for t in targets if t.name == self.iqn), None)
        return ours, targets

    def adopt(self, names: frozenset[str]) -> None:
        """Nothing to adopt: the field agent only ever drove LIO, never tgt."""

    def open(self) -> None:
        """Check that tgtd answers; BackendError (temporary) when it does not."""
        self.tgtadm.show()

    def read(self) -> TargetState:
        ours, targets = self._ours()
        portals = frozenset(parse_portal(p) for p in self.tgtadm.portals())
        foreign = tuple(sorted(t.name for t in targets if t.name != self.iqn))
        if ours is None:
            return TargetState(self.iqn, portals=portals, foreign=foreign)
        stores: dict[str, StorageObject] = {}
        luns = []
        for lu in data_luns(ours):
            if half_made(lu):
                continue
            name = lun_name(lu)
            luns.append(Lun(lu.index, name))
            stores.setdefault(name, StorageObject(
                name=name, path=lu.path, size=lun_size(lu), serial=lu.scsi_sn,
                product_id=name, vendor=VENDOR, readonly=lu.readonly))
        return TargetState(
            self.iqn, exists=True, tpg_enabled=ours.state == "ready", portals=portals,
            storage_objects=tuple(sorted(stores.values(), key=lambda s: s.name)),
            luns=tuple(sorted(luns, key=lambda lun: lun.index)),
            attributes=attributes(ours), foreign=foreign, acls=self.access.acls(ours),
            chap=self.access.chap(ours))

    def sessions(self) -> tuple[str, ...]:
        ours, _ = self._ours()
        return () if ours is None else tuple(sorted(n.initiator for n in ours.nexus))

    def stats(self, indexes: Collection[int] | None = None) -> dict[int, LunStats]:
        """One ``tgtadm`` call whatever ``indexes`` asks for: every call also accounts for
        the sessions that logged out since the last one (see ``tgtmap.Counters``)."""
        ours, _ = self._ours()
        if ours is None:
            return {}
        every = self._counters.update(self.tgtadm.stat(ours.tid), data_luns(ours))
        if self.iostat is not None:
            for index, nbytes in self.iostat.read_bytes().items():
                if index in every:
                    every[index] = replace(every[index], read_bytes=nbytes)
        return every if indexes is None else {i: every[i] for i in indexes if i in every}

    # Writing ------------------------------------------------------------------------

    def commit(self) -> None:
        """Nothing to persist: see the module docstring."""

    def apply(self, action: Action) -> None:
        if isinstance(action, CreateTarget):
            self._create_target(action.iqn)
        elif isinstance(action, SetPortals):
            self._set_portals(action.portals)
        elif isinstance(action, SetTpgAttributes):
            for key, value in action.attributes:
                self._set_attribute(key, value)
        elif isinstance(action, SetTpgEnabled):
            state = "ready" if action.enabled else "offline"
            self._run(["--mode", "target", "--op", "update", "--tid", str(self._tid()),
                       "--name", "state", "--value", state], "enable", self.iqn)
        elif isinstance(action, CreateStorageObject):
            self._pending[action.storage.name] = checked(action.storage)
        elif isinstance(action, CreateLun):
            self._create_lun(action.lun)
        elif isinstance(action, DeleteLun):
            self._delete_lun(action.index)
        elif isinstance(action, (CreateAcl, DeleteAcl, MapLun, UnmapLun, SetAuth)):
            ours, _ = self._ours()
            if ours is None:
                raise BackendError(action.kind, self.iqn, "the target does not exist",
                                   temporary=True, code="tgt_no_target")
            self.access.apply(ours, action)
        elif isinstance(action, DeleteStorageObject):
            self._pending.pop(action.name, None)
            ours, _ = self._ours()
            for lu in data_luns(ours):
                if lun_name(lu) == action.name:
                    self._delete_lun(lu.index)
        else:
            raise BackendError(action.kind, action.subject or self.iqn,
                               "not a target action the tgt backend knows")

    def _run(self, args: list[str], operation: str, obj: str) -> str:
        return self.tgtadm(args, operation=operation, obj=obj)

    def _tid(self) -> int:
        ours, _ = self._ours()
        if ours is None:
            raise BackendError("find", self.iqn, "the target does not exist in tgtd",
                               temporary=True, code="tgt_no_target")
        return ours.tid

    def _create_target(self, iqn: str) -> None:
        if iqn != self.iqn:
            raise BackendError("create target", iqn, f"this backend manages {self.iqn} only")
        ours, targets = self._ours()
        if ours is not None:
            return
        tid = min(set(range(1, len(targets) + 2)) - {t.tid for t in targets})
        self._run(["--mode", "target", "--op", "new", "--tid", str(tid), "--targetname", iqn],
                  "create target", iqn)
        try:
            # Like a new LIO TPG: refuse logins until the plan enables it.
            self._run(["--mode", "target", "--op", "update", "--tid", str(tid), "--name",
                       "state", "--value", "offline"], "create target", iqn)
        except BackendError:
            self._run(["--mode", "target", "--op", "delete", "--tid", str(tid)],
                      "delete target", iqn)
            raise
        log.info("created target %s as tid %d", iqn, tid, extra={"iqn": iqn})

    def _set_portals(self, portals: frozenset[Portal]) -> None:
        current = set(self.tgtadm.portals())
        wanted = {str(p) for p in portals}
        for portal in sorted(wanted - current):
            self._run(["--mode", "portal", "--op", "new", "--param", f"portal={portal}"],
                      "add portal", portal)
        for portal in sorted(current - wanted):
            self._run(["--mode", "portal", "--op", "delete", "--param", f"portal={portal}"],
                      "remove portal", portal)

    def _set_attribute(self, key: str, value: str) -> None:
        ours, _ = self._ours()
        if ours is None:
            raise BackendError("set attribute", self.iqn, "the target does not exist",
                               temporary=True, code="tgt_no_target")
        tid = str(ours.tid)
        if key == "generate_node_acls":
            # ALL is tgt's generated ACL; named initiators are CreateAcl/DeleteAcl's.
            if (value == "1") != ("ALL" in ours.acl):
                op = "bind" if value == "1" else "unbind"
                self._run(["--mode", "target", "--op", op, "--tid", tid, *acl_args("ALL")],
                          op, "ALL")
        elif key in ("demo_mode_write_protect", "prod_mode_write_protect"):
            if value != "1":
                raise BackendError("set attribute", self.iqn, "sbps LUNs are always "
                                   "read-only", code="config")
            for lu in data_luns(ours):
                if marked(lu) and not lu.readonly:
                    self._run(["--mode", "logicalunit", "--op", "update", "--tid", tid,
                               "--lun", str(lu.index), "--params", "readonly=1"],
                              "set read-only", f"LUN {lu.index}")
        elif key == "authentication":
            # Accounts are bound by SetAuth (planned first); here only the two must agree.
            if value == "1" and not ours.accounts:
                raise BackendError("set attribute", self.iqn, "authentication=1 needs a CHAP "
                                   "account bound to the target (SetAuth)", code="config")
            if value == "0" and ours.accounts:
                self.access.apply(ours, SetAuth(None, Chap(), reason="authentication=0"))
        # cache_dynamic_acls has no tgt equivalent: it follows generate_node_acls.

    def _create_lun(self, lun: Lun) -> None:
        obj = f"LUN {lun.index} ({lun.storage_object})"
        if not 1 <= lun.index <= _FLAT_SPACE:
            raise BackendError("create LUN", obj, "tgt LUN ids run 1..16383 (0 is the "
                               "controller)")
        ours, _ = self._ours()
        if ours is None:
            raise BackendError("create LUN", obj, "the target does not exist",
                               temporary=True, code="tgt_no_target")
        existing = {lu.index: lu for lu in data_luns(ours)}
        tid, index = str(ours.tid), str(lun.index)
        if lun.index in existing and half_made(existing[lun.index]):
            self._run(["--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun",
                       index], "delete half-made LUN", obj)
            del existing[lun.index]
        if lun.index in existing:
            if lun_name(existing[lun.index]) == lun.storage_object:
                return
            raise BackendError("create LUN", obj, f"LUN {lun.index} is taken by "
                               f"{lun_name(existing[lun.index])}", code="lun_conflict")
        so = self._pending.get(lun.storage_object) or next(
            (storage_of(lu) for lu in existing.values() if lun_name(lu) == lun.storage_object),
            None)
        if so is None:
            raise BackendError("create LUN", obj, "no storage object of that name",
                               code="no_storage_object")
        params = (f"readonly=1,removable=0,vendor_id={so.vendor},"
                  f"product_id={so.product_id},scsi_id={scsi_id(so.serial)},"
                  f"scsi_sn={so.serial},"
                  f"path={so.path}")
        # Made without a backing file (offline, capacity 0), then read-only before its
        # path, in one request: never writable (see the module docstring).
        with self.iostat.creating(lun.index) if self.iostat else contextlib.nullcontext():
            self._run(["--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", index,
                       "--bstype", "rdwr"], "create LUN", obj)
        try:
            self._run(["--mode", "logicalunit", "--op", "update", "--tid", tid, "--lun", index,
                       "--params", params], "set LUN parameters", obj)
        except BackendError:
            self._run(["--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun",
                       index], "delete LUN", obj)
            raise
        self._pending.pop(lun.storage_object, None)
        self._counters.forget(lun.index)

    def _delete_lun(self, index: int) -> None:
        if index == 0:
            raise BackendError("delete LUN", "LUN 0", "tgt's controller LUN is not ours")
        ours, _ = self._ours()
        if ours is None or index not in {lu.index for lu in ours.luns}:
            return
        self._run(["--mode", "logicalunit", "--op", "delete", "--tid", str(ours.tid), "--lun",
                   str(index)], "delete LUN", f"LUN {index}")
        self._counters.forget(index)
        if self.iostat is not None:
            self.iostat.forget(index)


def from_config(cfg: Config, iqn: str) -> TgtBackend:
    t = cfg.target
    return TgtBackend(iqn, Tgtadm(t.tgtadm, t.tgt_control_port),
                      IoThreads(t.tgt_control_port,
                                Path(cfg.reconcile.state_dir) / "tgt-iothreads.json"))
