"""Reading the live LIO tree through rtslib: storage objects, this worker's TPG, LUNs,
portals, access attributes, counters and sessions, plus the ownership verdict per object.

Owns the interpretation of what configfs shows (including objects left half-made by a
process killed during a create: they are recognised so the next create can finish the job).
Must not write anything: every function here is read-only, so a converged target sees zero
writes from a pass.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sbps.backends.lio_rtslib import read_text
from sbps.model import VENDOR, LunStats, Portal, StorageObject

TPG_TAG = 1
#: TPG attributes that decide who may read and whether anyone may write.
ACCESS_ATTRIBUTES = ("generate_node_acls", "demo_mode_write_protect", "cache_dynamic_acls",
                     "authentication", "prod_mode_write_protect")


@dataclass
class Ownership:
    """What belongs to sbps: backed under the cache directory, or adopted by name."""

    cache_dir: str
    adopted: frozenset[str] = frozenset()

    def path_owned(self, path: str) -> bool:
        prefix = os.path.normpath(self.cache_dir) + "/"
        return os.path.normpath(path).startswith(prefix) if path else False

    def owns(self, so: StorageObject) -> bool:
        return self.path_owned(so.path) or so.name in self.adopted


@dataclass
class SoInfo:
    """One storage object as configfs shows it; ``state`` is None for a half-made object."""

    plugin: str
    name: str
    path: str
    rts: Any
    state: StorageObject | None
    users: list[str] = field(default_factory=list)
    """LUNs (``<fabric>/<wwn>/tpg<n>/lun<i>``) that link to it."""


@dataclass
class Tree:
    storage: dict[str, SoInfo]
    """keyed by configfs path (realpath) of the storage object."""
    target: Any | None
    tpg: Any | None
    luns: dict[int, str]
    """this worker's TPG: LUN index -> configfs path of the storage object it links."""
    broken_luns: tuple[int, ...]
    other_luns: tuple[str, ...]

    def fileio(self, name: str) -> SoInfo | None:
        return next((s for s in self.storage.values()
                     if s.plugin == "fileio" and s.name == name), None)


def lun_name(fabric: str, wwn: str, tag: int, index: int) -> str:
    return f"{fabric}/{wwn}/tpg{tag}/lun{index}"


def scan(root: Any, iqn: str) -> Tree:
    """One walk over storage objects and every fabric's LUNs."""
    storage: dict[str, SoInfo] = {}
    for so in root.storage_objects:
        path = os.path.realpath(so.path)
        storage[path] = SoInfo(so.plugin, so.name, path, so, None)
    ours_target = ours_tpg = None
    luns: dict[int, str] = {}
    broken: list[int] = []
    others: list[str] = []
    for target in root.targets:
        fabric = target.fabric_module.name
        mine = fabric == "iscsi" and target.wwn == iqn
        if mine:
            ours_target = target
        for tpg in target.tpgs:
            here = mine and int(tpg.tag) == TPG_TAG
            if here:
                ours_tpg = tpg
            for index, so_path in _lun_links(tpg):
                name = lun_name(fabric, target.wwn, int(tpg.tag), index)
                if so_path is None:
                    if here:
                        broken.append(index)
                    else:
                        others.append(name)
                    continue
                if so_path in storage:
                    storage[so_path].users.append(name)
                if here:
                    luns[index] = so_path
                else:
                    others.append(name)
    return Tree(storage, ours_target, ours_tpg, luns, tuple(sorted(broken)), tuple(others))


def find_fileio(configfs_root: str, name: str) -> str | None:
    """configfs path of the fileio backstore ``name``, without walking every object."""
    core = os.path.join(configfs_root, "core")
    for hba in sorted(os.listdir(core)) if os.path.isdir(core) else ():
        path = os.path.join(core, hba, name)
        if hba.startswith("fileio_") and os.path.isdir(path):
            return os.path.realpath(path)
    return None


def free_hba_index(configfs_root: str) -> int:
    """The lowest fileio HBA index with no directory. rtslib's own choice skips only HBAs
    that hold an object, and then fails on an empty one (left by a process killed between
    the two mkdirs of a create), as its stale-HBA check does not expect hba_info/hba_mode."""
    core = os.path.join(configfs_root, "core")
    used = {int(h[7:]) for h in os.listdir(core) if h.startswith("fileio_") and h[7:].isdigit()}
    return next(i for i in range(len(used) + 1) if i not in used)


def so_info(path: str) -> SoInfo:
    from rtslib_fb.tcm import StorageObject as RtsStorageObject

    so = RtsStorageObject.so_from_path(path)
    return SoInfo(so.plugin, so.name, path, so, None)


def users_of(root: Any, so_path: str) -> list[str]:
    """Every LUN, on any target, that links the storage object at ``so_path``."""
    return [lun_name(t.fabric_module.name, t.wwn, int(tpg.tag), index)
            for t in root.targets for tpg in t.tpgs
            for index, linked in _lun_links(tpg) if linked == so_path]


def lun_link(tpg: Any, index: int) -> tuple[bool, str | None]:
    """Whether ``lun_<index>`` exists in the TPG, and the storage object it links."""
    lun_dir = os.path.join(tpg.path, "lun", f"lun_{index}")
    if not os.path.isdir(lun_dir):
        return False, None
    link = next((os.path.join(lun_dir, n) for n in os.listdir(lun_dir)
                 if os.path.islink(os.path.join(lun_dir, n))), None)
    return True, os.path.realpath(link) if link else None


def _lun_links(tpg: Any) -> Iterator[tuple[int, str | None]]:
    base = os.path.join(tpg.path, "lun")
    if not os.path.isdir(base):
        return
    for entry in sorted(os.listdir(base)):
        if not entry.startswith("lun_"):
            continue
        lun_dir = os.path.join(base, entry)
        link = next((os.path.join(lun_dir, n) for n in os.listdir(lun_dir)
                     if os.path.islink(os.path.join(lun_dir, n))), None)
        yield int(entry[4:]), os.path.realpath(link) if link else None


def describe(info: SoInfo, own: Ownership) -> StorageObject | None:
    """The model view of a fileio object, or None while it is half-made by sbps.

    Half-made means: never enabled with no backing file recorded, or backed in our cache
    and not (yet) carrying the identity sbps writes last (serial and product id both derived
    from the name), with no LUN linking it. rtslib's create writes mkdir, control, udev_path,
    enable and serial in that order, then sbps writes product id and vendor.
    """
    so = info.rts
    path = backing_path(so.path)
    if not so.is_configured():
        if not path or (own.path_owned(path) and not info.users):
            return None
        return StorageObject(name=info.name, path=path, size=0, serial="", product_id="",
                             vendor="", write_back=False, readonly=False)
    product, vendor = _inquiry(so.path, info.name)
    state = StorageObject(
        name=info.name, path=path, size=int(so.size), serial=so.wwn,
        product_id=product, vendor=vendor,
        write_back=bool(so.write_back), readonly=_readonly(path))
    if own.path_owned(state.path) and not info.users and not complete(state):
        return None
    return state


def backing_path(so_path: str) -> str:
    """The backing file: ``udev_path`` (rtslib writes it), else the ``File:`` of ``info``
    (``fd_dev_name``). rtslib's own fallback misreads an empty name as the next word."""
    path = read_text(os.path.join(so_path, "udev_path"))
    if path:
        return path
    found = re.search(r"File: (\S*)\s+Size:", read_text(os.path.join(so_path, "info")))
    return found.group(1) if found else ""


def _inquiry(so_path: str, name: str) -> tuple[str, str]:
    """Product id and vendor. Kernels before 5.0 have no ``wwn/product_id`` or
    ``wwn/vendor_id``: the vendor is then always LIO-ORG, and the product id is the
    backstore name (first 15 characters) exactly when ``emulate_model_alias`` is set."""
    wwn = os.path.join(so_path, "wwn")
    product_file = os.path.join(wwn, "product_id")
    if os.path.exists(product_file):
        product = read_text(product_file)
    else:
        alias = read_text(os.path.join(so_path, "attrib", "emulate_model_alias")) == "1"
        product = name[:15] if alias else ""
    vendor_file = os.path.join(wwn, "vendor_id")
    vendor = read_text(vendor_file) if os.path.exists(vendor_file) else VENDOR
    return product, vendor


def complete(so: StorageObject) -> bool:
    return (so.serial.startswith(so.name) and so.product_id == so.name
            and so.vendor == VENDOR)


def _readonly(path: str) -> bool:
    """fileio has no read-only switch in the kernel (writes are refused per TPG/ACL); what
    the backstore itself can promise is that its file carries no write permission."""
    try:
        return not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    except OSError:
        return False


def portals(tpg: Any) -> frozenset[Portal]:
    return frozenset(Portal(np.ip_address, int(np.port)) for np in tpg.network_portals)


def attributes(tpg: Any) -> tuple[tuple[str, str], ...]:
    base = os.path.join(tpg.path, "attrib")
    return tuple((name, read_text(os.path.join(base, name))) for name in ACCESS_ATTRIBUTES
                 if os.path.exists(os.path.join(base, name)))


def lun_stats(tpg: Any) -> dict[int, LunStats]:
    """Per-LUN counters of the target port. The kernel counts read data in whole MiB
    (``read_mbytes``, bytes >> 20) and has no finer per-LUN byte counter; ``in_cmds``
    counts every command, the path checker's TEST UNIT READY included."""
    out: dict[int, LunStats] = {}
    for index, _ in _lun_links(tpg):
        port = os.path.join(tpg.path, "lun", f"lun_{index}", "statistics", "scsi_tgt_port")
        mbytes = read_text(os.path.join(port, "read_mbytes")) or "0"
        cmds = read_text(os.path.join(port, "in_cmds")) or "0"
        out[index] = LunStats(index=index, read_bytes=int(mbytes) << 20, commands=int(cmds))
    return out


def session_initiators(tpg: Any) -> tuple[str, ...]:
    """Logged-in initiators: dynamic sessions (generated ACLs) and explicit ACLs' ``info``."""
    names: set[str] = set()
    dynamic = read_text(os.path.join(tpg.path, "dynamic_sessions"))
    for entry in dynamic.replace("\0", "\n").splitlines():
        name = entry.split(",", 1)[0].strip()
        if name:
            names.add(name)
    acls = os.path.join(tpg.path, "acls")
    if os.path.isdir(acls):
        for acl in os.listdir(acls):
            info = read_text(os.path.join(acls, acl, "info"))
            if "LIO Session ID" in info:
                names.add(acl)
    return tuple(sorted(names))
