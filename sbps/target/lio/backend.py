"""The ``lio`` target backend: kernel LIO driven through rtslib-fb objects (no targetcli).

Owns this worker's iSCSI target (``<iqn>``, TPG 1) and the fileio backstores sbps owns
(backed under the cache directory, or adopted by name by the reconciler). Everything else on
the target host is reported as foreign and never changed: a request to touch it raises
BackendError. Every method blocks and must run on the one backend thread (one writer).
This module owns when to read in full (see ``read``) and which write goes where: the tree
walk is ``lio_tree``, objects into the model ``lio_read``, backstores and LUNs
``lio_objects``, node ACLs, mapped LUNs and CHAP ``lio_acl``, saveconfig.json ``lio_save``.

Must not: load kernel modules or mount anything (rtslib would; see lio_rtslib), read state
from saveconfig.json, clear the target, or call rtslib's ``delete(save=True)``. The
constructor has no side effects; ``open()`` (or the first call) points rtslib at
``target.configfs_root``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sbps.config import TargetConfig
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
from sbps.core.target_state import LoggedIn, LunStats, TargetState
from sbps.target.lio import acl, objects
from sbps.target.lio import read as rd
from sbps.target.lio import tree as lt
from sbps.target.lio.plumbing import (
    forget_backstore_indexes,
    point_rtslib_at,
    rtslib_root,
    translated,
)
from sbps.target.lio.save import SavedConfig

log = logging.getLogger(__name__)


class LioBackend:
    name = "lio"

    def __init__(self, target: TargetConfig, cache_dir: str, iqn: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = target
        self.iqn = iqn
        self.ownership = rd.ObjectOwnership(cache_dir)
        self.clock = clock
        self._opened = False
        self._known: _Read | None = None
        self._saved = SavedConfig(target.saveconfig_path, iqn,
                                  max_age=target.verify_interval, clock=clock)

    # Lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Point rtslib at ``target.configfs_root``; idempotent. Raises BackendError when the
        LIO tree is not there (target.service has not run)."""
        with translated("open", self.config.configfs_root):
            point_rtslib_at(self.config.configfs_root)
        self._opened = True

    def adopt(self, names: frozenset[str]) -> None:
        """Names of field-agent backstores the reconciler adopted: sbps may now change them."""
        if frozenset(names) != self.ownership.adopted:
            self.ownership.adopted = frozenset(names)
            self._known = None  # ownership is part of what a read reports

    def _root(self) -> Any:
        if not self._opened:
            self.open()
        forget_backstore_indexes()
        with translated("open", self.config.configfs_root):
            return rtslib_root()

    @property
    def _configfs(self) -> str:
        """The configfs root, checked at every call: a tree that went away (configfs
        unmounted, target_core_mod unloaded) is an error, never an empty target."""
        if not self._opened:
            self.open()
        root = self.config.configfs_root
        if not os.path.isdir(root):
            raise BackendError("read", root, "LIO configfs tree missing: configfs not "
                               "mounted or target_core_mod not loaded", temporary=True)
        return root

    # Reading ------------------------------------------------------------------------------

    def read(self) -> TargetState:
        """The live state. Every object is read in full at the first call, after any write
        by sbps, when a listing of backstores, LUNs or ACLs changed, and at least every
        ``target.verify_interval``; otherwise the TPG's own settings are read now and the
        objects' descriptions come from the last full read (the kernel refuses to change a
        backstore's identity while a LUN exports it)."""
        root = self._configfs
        with translated("read", self.iqn):
            shape = lt.shape(root, self.iqn)
            now = self.clock()
            known = self._known
            if known is not None and known.shape == shape \
                    and now - known.at < self.config.verify_interval:
                return rd.with_tpg(known.state, known.tpg, acls=False)
            tree = lt.scan(root, self.iqn)
            state = rd.target_state(self.iqn, tree, self.ownership)
        self._known = _Read(shape, now, tree.tpg, state)
        return state

    def stats(self, indexes: Collection[int] | None = None) -> dict[int, LunStats]:
        """Two small files per LUN asked for, so a pass asks only for the LUNs it decides
        on."""
        tpg = lt.tpg_dir(self._configfs, self.iqn)
        with translated("stats", self.iqn):
            if indexes is None:
                indexes = lt.lun_indexes(tpg)
            return rd.lun_stats(tpg, indexes)

    def sessions(self) -> tuple[str, ...]:
        tpg = lt.tpg_dir(self._configfs, self.iqn)
        with translated("sessions", self.iqn):
            return rd.session_initiators(tpg) if os.path.isdir(tpg) else ()

    def session_table(self) -> tuple[LoggedIn, ...]:
        tpg = lt.tpg_dir(self._configfs, self.iqn)
        with translated("sessions", self.iqn):
            if not os.path.isdir(tpg):
                return ()
            return tuple(LoggedIn(name, luns=rd.acl_lun_stats(tpg, name))
                         for name in rd.session_initiators(tpg))

    # Writing ------------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        if not isinstance(action, TargetAction) or type(action) not in HANDLERS:
            raise BackendError(action.kind, action.subject or self.iqn,
                               "not a target action")
        self._known = None  # whatever happens next, the next read is a full one
        if action.touches is not None:
            self._saved.forget(action.touches)
        HANDLERS[type(action)](self, action)

    def commit(self) -> None:
        """Save rtslib's dump of the whole configuration for target.service (atomically,
        previous file kept as ``.bak``; see ``lio_save``)."""
        root = self._root()
        path = self.config.saveconfig_path
        with translated("save", path):
            skipped = self._saved.save(root, self._configfs)
        if skipped:
            log.warning("saved without half-made objects: %s", ", ".join(skipped),
                        extra={"iqn": self.iqn})

    def _create_target(self, action: CreateTarget) -> None:
        if action.iqn != self.iqn:
            raise BackendError("create target", action.iqn, f"not this worker's target "
                               f"({self.iqn})")
        root = self._root()
        from rtslib_fb import TPG, FabricModule, Target

        with translated("create target", self.iqn):
            fabric = next((f for f in root.fabric_modules if f.name == "iscsi"), None)
            target = Target(fabric or FabricModule("iscsi"), self.iqn, "any")
            TPG(target, lt.TPG_TAG, "any")

    def _our_tpg(self, operation: str) -> Any:
        """This worker's TPG, looked up directly (no walk over every object)."""
        self._root()
        from rtslib_fb import TPG, FabricModule, Target

        if not os.path.isdir(lt.tpg_dir(self._configfs, self.iqn)):
            raise BackendError(operation, self.iqn, "target or tpg1 does not exist")
        with translated(operation, self.iqn):
            return TPG(Target(FabricModule("iscsi"), self.iqn, "lookup"), lt.TPG_TAG, "lookup")

    def _set_portals(self, action: SetPortals) -> None:
        tpg = self._our_tpg("set portals")
        from rtslib_fb import NetworkPortal

        with translated("set portals", self.iqn):
            current = {(np.ip_address, int(np.port)): np for np in tpg.network_portals}
            for key in sorted((p.address, p.port) for p in action.remove):
                if key in current:
                    current[key].delete()
            for key in sorted((p.address, p.port) for p in action.add):
                if key not in current:
                    NetworkPortal(tpg, key[0], key[1], "create")

    def _set_attributes(self, action: SetTpgAttributes) -> None:
        tpg = self._our_tpg("set tpg attributes")
        for key, value in action.attributes:
            with translated("set tpg attribute", f"{self.iqn}/tpg1/attrib/{key}"):
                if str(tpg.get_attribute(key)).strip() != value:
                    tpg.set_attribute(key, value)

    def _set_enabled(self, action: SetTpgEnabled) -> None:
        tpg = self._our_tpg("enable tpg" if action.enabled else "disable tpg")
        with translated("set tpg enable", self.iqn):
            if bool(tpg.enable) != action.enabled:
                tpg.enable = action.enabled

    def _create_storage(self, action: CreateStorageObject) -> None:
        self._root()  # rtslib pointed at the tree, its backstore index cache dropped
        objects.create_storage(self._configfs, self.ownership, action.storage)

    def _create_lun(self, action: CreateLun) -> None:
        tpg = self._our_tpg("create lun")
        objects.create_lun(self._configfs, self.ownership, tpg, self.iqn, action.lun)

    def _delete_lun(self, action: DeleteLun) -> None:
        tpg = self._our_tpg("delete lun")
        objects.delete_lun(self._configfs, self.ownership, tpg, self.iqn, action.index)

    def _delete_storage(self, action: DeleteStorageObject) -> None:
        self._root()
        objects.delete_storage(self._configfs, self.ownership, action.name)


@dataclass(frozen=True)
class _Read:
    """The last full read and the listings it was taken with."""

    shape: tuple[tuple[str, ...], ...]
    at: float
    tpg: str | None
    state: TargetState


def _on_tpg(change: Callable[[Any, str, Any], None]) -> Callable[[LioBackend, AclAction], None]:
    """The handler of an ACL action: ``change`` on this worker's TPG (``lio.acl``)."""
    return lambda backend, action: change(backend._our_tpg(action.kind), backend.iqn, action)


#: The one dispatch of the LIO backend: action type -> handler. tests/unit/test_actions.py
#: checks that it covers every ``TargetAction``.
HANDLERS: Mapping[type[TargetAction], Callable[[LioBackend, Any], None]] = MappingProxyType({
    CreateTarget: LioBackend._create_target,
    SetPortals: LioBackend._set_portals,
    SetTpgAttributes: LioBackend._set_attributes,
    SetTpgEnabled: LioBackend._set_enabled,
    CreateStorageObject: LioBackend._create_storage,
    CreateLun: LioBackend._create_lun,
    DeleteLun: LioBackend._delete_lun,
    DeleteStorageObject: LioBackend._delete_storage,
    CreateAcl: _on_tpg(acl.create_acl),
    DeleteAcl: _on_tpg(acl.delete_acl),
    MapLun: _on_tpg(acl.map_lun),
    UnmapLun: _on_tpg(acl.unmap_lun),
    SetAuth: _on_tpg(acl.set_auth),
})

__all__ = ["HANDLERS", "LioBackend"]
