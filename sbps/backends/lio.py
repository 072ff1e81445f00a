"""The ``lio`` target backend: kernel LIO driven through rtslib-fb objects (no targetcli).

Owns this worker's iSCSI target (``<iqn>``, TPG 1) and the fileio backstores sbps owns
(backed under the cache directory, or adopted by name by the reconciler). Everything else on
the target host is reported as foreign and never changed: a request to touch it raises
BackendError. Every method blocks and must run on the one backend thread (one writer).
Node ACLs, mapped LUNs and CHAP are handled in ``sbps.backends.lio_acl``.

Must not: load kernel modules or mount anything (rtslib would; see lio_rtslib), read state
from saveconfig.json, clear the target, or call rtslib's ``delete(save=True)``. The
constructor has no side effects; ``open()`` (or the first call) points rtslib at
``target.configfs_root``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sbps.backends import lio_read as rd
from sbps.backends.lio_acl import apply_acl_action
from sbps.backends.lio_rtslib import (
    forget_backstore_indexes,
    point_rtslib_at,
    read_text,
    rtslib_root,
    translated,
    write_text,
)
from sbps.backends.lio_save import SavedConfig
from sbps.config import TargetConfig
from sbps.errors import BackendError
from sbps.model import (
    Action,
    CreateAcl,
    CreateLun,
    CreateStorageObject,
    CreateTarget,
    DeleteAcl,
    DeleteLun,
    DeleteStorageObject,
    LunStats,
    MapLun,
    SetAuth,
    SetPortals,
    SetTpgAttributes,
    SetTpgEnabled,
    TargetState,
    UnmapLun,
)

log = logging.getLogger(__name__)


class LioBackend:
    name = "lio"

    def __init__(self, target: TargetConfig, cache_dir: str, iqn: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = target
        self.iqn = iqn
        self.ownership = rd.Ownership(cache_dir)
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
        if not self._opened:
            self.open()
        return self.config.configfs_root

    def _tree(self, operation: str) -> rd.Tree:
        with translated(operation, self.iqn):
            return rd.scan(self._configfs, self.iqn)

    # Reading ------------------------------------------------------------------------------

    def read(self) -> TargetState:
        """The live state. Every object is read in full at the first call, after any write
        by sbps, when a listing of backstores, LUNs or ACLs changed, and at least every
        ``target.verify_interval``; otherwise the TPG's own settings are read now and the
        objects' descriptions come from the last full read (the kernel refuses to change a
        backstore's identity while a LUN exports it)."""
        root = self._configfs
        with translated("read", self.iqn):
            shape = rd.shape(root, self.iqn)
            now = self.clock()
            known = self._known
            if known is not None and known.shape == shape \
                    and now - known.at < self.config.verify_interval:
                return rd.with_tpg(known.state, known.tpg, acls=False)
            tree = rd.scan(root, self.iqn)
            state = rd.target_state(self.iqn, tree, self.ownership)
        self._known = _Read(shape, now, tree.tpg, state)
        return state

    def stats(self, indexes: Collection[int] | None = None) -> dict[int, LunStats]:
        """Two small files per LUN asked for, so a pass asks only for the LUNs it decides
        on."""
        tpg = rd.tpg_dir(self._configfs, self.iqn)
        with translated("stats", self.iqn):
            if indexes is None:
                indexes = rd.lun_indexes(tpg)
            return rd.lun_stats(tpg, indexes)

    def sessions(self) -> tuple[str, ...]:
        tpg = rd.tpg_dir(self._configfs, self.iqn)
        with translated("sessions", self.iqn):
            return rd.session_initiators(tpg) if os.path.isdir(tpg) else ()

    # Writing ------------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        handler = _HANDLERS.get(type(action))
        if handler is None:
            raise BackendError(action.kind, action.subject or self.iqn,
                               "not a target action")
        self._known = None  # whatever happens next, the next read is a full one
        kind, name = _touches(action)
        if kind:
            self._saved.forget(kind, name)
        handler(self, action)

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
            TPG(target, rd.TPG_TAG, "any")

    def _our_tpg(self, operation: str) -> Any:
        """This worker's TPG, looked up directly (no walk over every object)."""
        self._root()
        from rtslib_fb import TPG, FabricModule, Target

        if not os.path.isdir(rd.tpg_dir(self._configfs, self.iqn)):
            raise BackendError(operation, self.iqn, "target or tpg1 does not exist")
        with translated(operation, self.iqn):
            return TPG(Target(FabricModule("iscsi"), self.iqn, "lookup"), rd.TPG_TAG, "lookup")

    def _set_portals(self, action: SetPortals) -> None:
        tpg = self._our_tpg("set portals")
        from rtslib_fb import NetworkPortal

        with translated("set portals", self.iqn):
            current = {(np.ip_address, int(np.port)): np for np in tpg.network_portals}
            wanted = {(p.address, p.port) for p in action.portals}
            for key in sorted(wanted - current.keys()):
                NetworkPortal(tpg, key[0], key[1], "create")
            for key in sorted(current.keys() - wanted):
                current[key].delete()

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

    def _acl(self, action: CreateAcl | DeleteAcl | MapLun | UnmapLun | SetAuth) -> None:
        tpg = self._our_tpg(action.kind)
        apply_acl_action(tpg, self.iqn, action)

    def _create_storage(self, action: CreateStorageObject) -> None:
        so = action.storage
        op = "create backstore"
        if not self.ownership.path_owned(so.path):
            raise BackendError(op, so.name, f"backing file {so.path} is outside the cache "
                               f"directory {self.ownership.cache_dir}")
        self._root()  # rtslib pointed at the tree, its backstore index cache dropped
        configfs = self._configfs
        with translated(op, so.name):
            existing = rd.find_fileio(configfs, so.name)
            if existing is not None:
                existing.users = rd.users_of(configfs, existing.key)
                described = rd.describe(existing, self.ownership)
        if existing is not None:
            if described is not None:
                if described == so:
                    return
                raise BackendError(op, so.name, f"exists as {described}")
            log.info("finishing an interrupted create", extra={"backstore": so.name})
            with translated("delete half-made backstore", so.name):
                _rtslib_object(existing).delete()
        from rtslib_fb import FileIOStorageObject

        with translated(op, so.name):
            created = FileIOStorageObject(so.name, so.path, size=so.size, wwn=so.serial,
                                          write_back=so.write_back,
                                          index=rd.free_hba_index(configfs))
            # The kernel derives the product id from the backstore name when
            # emulate_model_alias is set; that attribute is in saveconfig.json, so a reboot
            # restores the same product id. Written before the wwn files, which it resets.
            alias = os.path.join(created.path, "attrib", "emulate_model_alias")
            if os.path.exists(alias) and read_text(alias) != "1":
                write_text(alias, "1")
            wwn = os.path.join(created.path, "wwn")
            for field, value in (("product_id", so.product_id), ("vendor_id", so.vendor)):
                path = os.path.join(wwn, field)
                # Kernels before 5.0 have no such file: the alias above is all there is.
                if os.path.exists(path) and read_text(path) != value:
                    write_text(path, value)

    def _create_lun(self, action: CreateLun) -> None:
        lun = action.lun
        op = "create lun"
        obj = f"{self.iqn}/tpg1/lun{lun.index}"
        tpg = self._our_tpg(op)
        with translated(op, obj):
            info = rd.find_fileio(self._configfs, lun.storage_object)
            state = rd.describe(info, self.ownership) if info is not None else None
        if info is None or state is None:
            raise BackendError(op, obj, f"backstore {lun.storage_object} does not exist")
        if not self.ownership.owns(state):
            raise BackendError(op, obj, f"backstore {lun.storage_object} is not owned by "
                               "sbps")
        from rtslib_fb import LUN

        with translated(op, obj):
            exists, current = rd.lun_link(tpg.path, lun.index)
            if current is not None:
                if current == info.key:
                    return
                raise BackendError(op, obj, f"index taken by {current.rpartition('/')[2]}")
            if exists:
                # Left empty by a process killed between mkdir and symlink.
                LUN(tpg, lun.index).delete()
            LUN(tpg, lun.index, _rtslib_object(info))

    def _delete_lun(self, action: DeleteLun) -> None:
        op = "delete lun"
        obj = f"{self.iqn}/tpg1/lun{action.index}"
        tpg = self._our_tpg(op)
        from rtslib_fb import LUN

        with translated(op, obj):
            exists, key = rd.lun_link(tpg.path, action.index)
            if key is None:
                if exists:  # an empty LUN left by a killed process
                    LUN(tpg, action.index).delete()
                return
            hba, _, name = key.partition("/")
            info = rd.SoInfo("fileio", name, key, os.path.join(self._configfs, "core", hba,
                                                               name), users=[obj])
            state = rd.describe(info, self.ownership) if hba.startswith("fileio_") else None
        if state is None or not self.ownership.owns(state):
            raise BackendError(op, obj, f"links {name}, which sbps does not own")
        with translated(op, obj):
            LUN(tpg, action.index).delete()

    def _delete_storage(self, action: DeleteStorageObject) -> None:
        op = "delete backstore"
        configfs = self._configfs
        with translated(op, action.name):
            info = rd.find_fileio(configfs, action.name)
            if info is None:
                return
            info.users = rd.users_of(configfs, info.key)
            state = rd.describe(info, self.ownership)
        if state is not None and not self.ownership.owns(state):
            raise BackendError(op, action.name, "not owned by sbps")
        if info.users:
            raise BackendError(op, action.name, f"still exported by {', '.join(info.users)}")
        self._root()
        with translated(op, action.name):
            _rtslib_object(info).delete()


def _touches(action: Action) -> tuple[str, str]:
    """The object of this worker's target an action changes, as ``SavedConfig`` keys it."""
    if isinstance(action, CreateStorageObject):
        return "so", action.storage.name
    if isinstance(action, DeleteStorageObject):
        return "so", action.name
    if isinstance(action, CreateLun):
        return "lun", str(action.lun.index)
    if isinstance(action, DeleteLun):
        return "lun", str(action.index)
    if isinstance(action, CreateAcl | DeleteAcl | MapLun | UnmapLun | SetAuth) \
            and action.initiator is not None:
        return "acl", action.initiator
    return "", ""


def _rtslib_object(info: rd.SoInfo) -> Any:
    from rtslib_fb.tcm import StorageObject as RtsStorageObject

    return RtsStorageObject.so_from_path(info.path)


@dataclass(frozen=True)
class _Read:
    """The last full read and the listings it was taken with."""

    shape: tuple[tuple[str, ...], ...]
    at: float
    tpg: str | None
    state: TargetState


_HANDLERS: dict[type, Any] = {
    CreateTarget: LioBackend._create_target,
    SetPortals: LioBackend._set_portals,
    SetTpgAttributes: LioBackend._set_attributes,
    SetTpgEnabled: LioBackend._set_enabled,
    CreateStorageObject: LioBackend._create_storage,
    CreateLun: LioBackend._create_lun,
    DeleteLun: LioBackend._delete_lun,
    DeleteStorageObject: LioBackend._delete_storage,
    CreateAcl: LioBackend._acl,
    DeleteAcl: LioBackend._acl,
    MapLun: LioBackend._acl,
    UnmapLun: LioBackend._acl,
    SetAuth: LioBackend._acl,
}

__all__ = ["LioBackend"]
