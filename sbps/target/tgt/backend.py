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
- The target's state, tgtd's portals and the TPG attributes (in LIO's words): see
  ``sbps.target.tgt.settings``.
- Node ACLs are initiator names (or addresses) bound to the target, and CHAP is per target;
  there is no LUN masking per initiator: see ``sbps.target.tgt.access``.
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
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sbps.core.actions import (
    AclAction,
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
    TargetAction,
    UnmapLun,
)
from sbps.core.errors import BackendError
from sbps.core.model import VENDOR
from sbps.core.target_state import LoggedIn, Lun, LunStats, StorageObject, TargetState
from sbps.target.tgt import settings
from sbps.target.tgt.access import TgtAccess
from sbps.target.tgt.iostat import IoThreads
from sbps.target.tgt.mapping import (
    SessionCounters,
    attributes,
    checked,
    data_luns,
    half_made,
    lun_name,
    lun_size,
    parse_portal,
    scsi_id,
    storage_of,
)
from sbps.target.tgt.tgtadm import Tgtadm, TgtTarget

if TYPE_CHECKING:
    from sbps.config.schema import Config

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
        self._counters = SessionCounters()

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

    def session_table(self) -> tuple[LoggedIn, ...]:
        """tgt counts every session per LUN (``--op stat`` rows by session id)."""
        ours, _ = self._ours()
        if ours is None:
            return ()
        rows = self.tgtadm.stat(ours.tid)
        out = []
        for nexus in sorted(ours.nexus, key=lambda n: (n.initiator, n.sid)):
            luns = tuple(LunStats(r.lun, read_bytes=r.read_bytes,
                                  commands=r.read_cmds + r.write_cmds)
                         for r in sorted(rows, key=lambda r: r.lun)
                         if r.sid == nexus.sid and r.lun != 0)
            out.append(LoggedIn(nexus.initiator, nexus.addresses, luns))
        return tuple(out)

    def stats(self, indexes: Collection[int] | None = None) -> dict[int, LunStats]:
        """One ``tgtadm`` call whatever ``indexes`` asks for: every call also accounts for
        the sessions that logged out since the last one (see ``tgtmap.SessionCounters``)."""
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
        if not isinstance(action, TargetAction) or type(action) not in HANDLERS:
            raise BackendError(action.kind, action.subject or self.iqn,
                               "not a target action the tgt backend knows")
        HANDLERS[type(action)](self, action)

    def _run(self, args: list[str], operation: str, obj: str) -> str:
        return self.tgtadm(args, operation=operation, obj=obj)

    def _target(self, operation: str, obj: str) -> TgtTarget:
        """This worker's target now; missing is temporary: the next pass creates it."""
        ours, _ = self._ours()
        if ours is None:
            raise BackendError(operation, obj, "the target does not exist in tgtd",
                               temporary=True, code="tgt_no_target")
        return ours

    def _create_target(self, action: CreateTarget) -> None:
        if action.iqn != self.iqn:
            raise BackendError("create target", action.iqn,
                               f"this backend manages {self.iqn} only")
        settings.create_target(self.tgtadm, self.iqn)

    def _set_enabled(self, action: SetTpgEnabled) -> None:
        settings.set_enabled(self.tgtadm, self._target("enable", self.iqn), action.enabled)

    def _set_portals(self, action: SetPortals) -> None:
        settings.set_portals(self.tgtadm, action.add, action.remove)

    def _set_attributes(self, action: SetTpgAttributes) -> None:
        for key, value in action.attributes:
            # Read again for each: setting one changes what the next one finds.
            settings.set_attribute(self.tgtadm, self.access,
                                   self._target("set attribute", self.iqn), key, value)

    def _create_storage(self, action: CreateStorageObject) -> None:
        self._pending[action.storage.name] = checked(action.storage)

    def _delete_storage(self, action: DeleteStorageObject) -> None:
        self._pending.pop(action.name, None)
        ours, _ = self._ours()
        for lu in data_luns(ours):
            if lun_name(lu) == action.name:
                self._delete_lun(lu.index)

    def _create_lun(self, lun: Lun) -> None:
        obj = f"LUN {lun.index} ({lun.storage_object})"
        if not 1 <= lun.index <= _FLAT_SPACE:
            raise BackendError("create LUN", obj, "tgt LUN ids run 1..16383 (0 is the "
                               "controller)")
        ours = self._target("create LUN", obj)
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


def _on_target(change: Callable[[TgtAccess, TgtTarget, Any], None]
               ) -> Callable[[TgtBackend, AclAction], None]:
    """The handler of an ACL action: ``change`` on this worker's target (``tgt.access``)."""
    return lambda backend, action: change(
        backend.access, backend._target(action.kind, backend.iqn), action)


#: The one dispatch of the tgt backend: action type -> handler. tests/unit/test_actions.py
#: checks that it covers every ``TargetAction``.
HANDLERS: Mapping[type[TargetAction], Callable[[TgtBackend, Any], None]] = MappingProxyType({
    CreateTarget: TgtBackend._create_target,
    SetPortals: TgtBackend._set_portals,
    SetTpgAttributes: TgtBackend._set_attributes,
    SetTpgEnabled: TgtBackend._set_enabled,
    CreateStorageObject: TgtBackend._create_storage,
    CreateLun: lambda backend, action: backend._create_lun(action.lun),
    DeleteLun: lambda backend, action: backend._delete_lun(action.index),
    DeleteStorageObject: TgtBackend._delete_storage,
    CreateAcl: _on_target(TgtAccess.create_acl),
    DeleteAcl: _on_target(TgtAccess.delete_acl),
    MapLun: _on_target(TgtAccess.map_lun),
    UnmapLun: _on_target(TgtAccess.unmap_lun),
    SetAuth: _on_target(TgtAccess.set_auth),
})


def from_config(cfg: Config, iqn: str) -> TgtBackend:
    t = cfg.target
    return TgtBackend(iqn, Tgtadm(t.tgtadm, t.tgt_control_port),
                      IoThreads(t.tgt_control_port,
                                Path(cfg.reconcile.state_dir) / "tgt-iothreads.json"))
