"""Backstores and LUNs of this worker's TPG, made and removed through rtslib-fb.

Owns the rules of each write: a backstore is created only backed under the cache
directory, with the identity sbps derives (serial, product id, vendor), and one left
half-made by a killed process is finished; a LUN links only a backstore sbps owns; neither
is removed when sbps does not own it, nor a backstore that any LUN on any target still
links. Must not read the whole tree (each call looks up only the objects it touches) or
save the configuration (``LioBackend.commit`` does). Blocking; on the backend thread.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sbps.core.errors import BackendError
from sbps.core.target_state import Lun, StorageObject
from sbps.target.lio import tree as lt
from sbps.target.lio.plumbing import read_text, translated, write_text
from sbps.target.lio.read import ObjectOwnership, describe

log = logging.getLogger(__name__)


def create_storage(configfs: str, own: ObjectOwnership, so: StorageObject) -> None:
    """Create a fileio backstore as sbps makes them; finish a half-made one; refuse
    a backing file outside the cache and an existing object that differs."""
    op = "create backstore"
    if not own.path_owned(so.path):
        raise BackendError(op, so.name, f"backing file {so.path} is outside the cache "
                           f"directory {own.cache_dir}")
    with translated(op, so.name):
        existing = lt.find_fileio(configfs, so.name)
        if existing is not None:
            existing.users = lt.users_of(configfs, existing.key)
            described = describe(existing, own)
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
                                      index=lt.free_hba_index(configfs))
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

def create_lun(configfs: str, own: ObjectOwnership, tpg: Any, iqn: str, lun: Lun) -> None:
    """Link ``lun`` in this worker's TPG (an rtslib TPG) to a backstore sbps owns."""
    op = "create lun"
    obj = f"{iqn}/tpg1/lun{lun.index}"
    with translated(op, obj):
        info = lt.find_fileio(configfs, lun.storage_object)
        state = describe(info, own) if info is not None else None
    if info is None or state is None:
        raise BackendError(op, obj, f"backstore {lun.storage_object} does not exist")
    if not own.owns(state):
        raise BackendError(op, obj, f"backstore {lun.storage_object} is not owned by "
                           "sbps")
    from rtslib_fb import LUN

    with translated(op, obj):
        exists, current = lt.lun_link(tpg.path, lun.index)
        if current is not None:
            if current == info.key:
                return
            raise BackendError(op, obj, f"index taken by {current.rpartition('/')[2]}")
        if exists:
            # Left empty by a process killed between mkdir and symlink.
            LUN(tpg, lun.index).delete()
        LUN(tpg, lun.index, _rtslib_object(info))

def delete_lun(configfs: str, own: ObjectOwnership, tpg: Any, iqn: str, index: int) -> None:
    """Remove LUN ``index`` of this worker's TPG, unless it links what sbps does not
    own."""
    op = "delete lun"
    obj = f"{iqn}/tpg1/lun{index}"
    from rtslib_fb import LUN

    with translated(op, obj):
        exists, key = lt.lun_link(tpg.path, index)
        if key is None:
            if exists:  # an empty LUN left by a killed process
                LUN(tpg, index).delete()
            return
        hba, _, name = key.partition("/")
        info = lt.SoInfo("fileio", name, key, os.path.join(configfs, "core", hba, name),
                         users=[obj])
        state = describe(info, own) if hba.startswith("fileio_") else None
    if state is None or not own.owns(state):
        raise BackendError(op, obj, f"links {name}, which sbps does not own")
    with translated(op, obj):
        LUN(tpg, index).delete()

def delete_storage(configfs: str, own: ObjectOwnership, name: str) -> None:
    """Remove the fileio backstore ``name``, unless sbps does not own it or a LUN on
    any target still links it."""
    op = "delete backstore"
    with translated(op, name):
        info = lt.find_fileio(configfs, name)
        if info is None:
            return
        info.users = lt.users_of(configfs, info.key)
        state = describe(info, own)
    if state is not None and not own.owns(state):
        raise BackendError(op, name, "not owned by sbps")
    if info.users:
        raise BackendError(op, name, f"still exported by {', '.join(info.users)}")
    with translated(op, name):
        _rtslib_object(info).delete()


def _rtslib_object(info: lt.SoInfo) -> Any:
    from rtslib_fb.tcm import StorageObject as RtsStorageObject

    return RtsStorageObject.so_from_path(info.path)
