"""Walking the live LIO tree in configfs: which storage objects, targets, TPGs and LUNs
exist, and which object each LUN links.

Owns the names and links only (``lio_read`` turns objects into the model), read with as few
configfs calls as it can: no rtslib objects, no ``realpath`` (each path component is a
lookup), one ``readlink`` per LUN, and ``shape()``, the six listings a pass compares to
decide whether anything was made or removed. Must not write anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from sbps.target.lio.plumbing import Dir, listdir

TPG_TAG = 1
#: HBA directory prefix -> rtslib's plugin name (what ``foreign`` reports).
PLUGINS = {"fileio": "fileio", "iblock": "block", "pscsi": "pscsi", "rd_mcp": "ramdisk",
           "user": "user"}
#: Entries of ``lun/lun_<n>`` that are not the link to the storage object.
_LUN_ATTRS = frozenset({"alua_tg_pt_gp", "alua_tg_pt_offline", "alua_tg_pt_status",
                        "alua_tg_pt_write_md", "statistics"})
_HBA_ATTRS = frozenset({"hba_info", "hba_mode"})
_NOT_TARGETS = frozenset({"discovery_auth", "lio_version", "version"})


@dataclass
class SoInfo:
    """One storage object as configfs shows it."""

    plugin: str
    name: str
    key: str
    """``<hba>/<name>``: what a LUN's link points at."""
    path: str
    """its configfs directory."""
    users: list[str] = field(default_factory=list)
    """LUNs (``<fabric>/<wwn>/tpg<n>/lun<i>``) that link to it."""


@dataclass
class Tree:
    storage: dict[str, SoInfo]
    """keyed by ``<hba>/<name>``."""
    tpg: str | None
    """configfs directory of this worker's TPG, when it exists."""
    luns: dict[int, str]
    """this worker's TPG: LUN index -> key of the storage object it links."""
    broken_luns: tuple[int, ...]
    other_luns: tuple[str, ...]


def lun_name(fabric: str, wwn: str, tag: int, index: int) -> str:
    return f"{fabric}/{wwn}/tpg{tag}/lun{index}"


def tpg_dir(root: str, iqn: str) -> str:
    return os.path.join(root, "iscsi", iqn, f"tpgt_{TPG_TAG}")


def scan(root: str, iqn: str) -> Tree:
    """One walk over storage objects and every fabric's LUNs."""
    storage = _storage(os.path.join(root, "core"))
    ours = tpg_dir(root, iqn)
    luns: dict[int, str] = {}
    broken: list[int] = []
    others: list[str] = []
    for fabric, wwn, tag, path in _tpgs(root):
        here = path == ours
        for index, linked in lun_links(path):
            name = lun_name(fabric, wwn, tag, index)
            if linked is None:
                if here:
                    broken.append(index)
                else:
                    others.append(name)
                continue
            if linked in storage:
                storage[linked].users.append(name)
            if here:
                luns[index] = linked
            else:
                others.append(name)
    return Tree(storage, ours if os.path.isdir(ours) else None, luns, tuple(sorted(broken)),
                tuple(others))


def _storage(core: str) -> dict[str, SoInfo]:
    storage: dict[str, SoInfo] = {}
    c = Dir.at(core)
    if c is None:
        return storage
    with c:
        for hba in c.names():
            prefix, _, number = hba.rpartition("_")
            plugin = PLUGINS.get(prefix)
            h = Dir.at(hba, c) if plugin is not None and number.isdigit() else None
            if plugin is None or h is None:
                continue
            with h:
                names = h.names()
            for name in names:
                if name not in _HBA_ATTRS:
                    key = f"{hba}/{name}"
                    storage[key] = SoInfo(plugin, name, key, os.path.join(core, key))
    return storage


def _tpgs(root: str) -> Iterator[tuple[str, str, int, str]]:
    """(fabric, target wwn, tag, directory) of every TPG of every loaded fabric."""
    for fabric in listdir(root):
        if fabric == "core" or not os.path.isdir(os.path.join(root, fabric)):
            continue
        for wwn in listdir(os.path.join(root, fabric)):
            if wwn in _NOT_TARGETS:
                continue
            for entry in listdir(os.path.join(root, fabric, wwn)):
                if entry.startswith("tpgt_") and entry[5:].isdigit():
                    yield fabric, wwn, int(entry[5:]), os.path.join(root, fabric, wwn, entry)


def link_key(link: str) -> str | None:
    """``<hba>/<name>`` of a link into ``core/`` (configfs writes them relative)."""
    parts = link.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 3 and parts[-3] == "core" else None


def lun_link(tpg: str, index: int) -> tuple[bool, str | None]:
    """Whether ``lun_<index>`` exists in the TPG, and the key of the object it links."""
    lun_dir = Dir.at(os.path.join(tpg, "lun", f"lun_{index}"))
    if lun_dir is None:
        return False, None
    with lun_dir:
        link = lun_dir.link(_LUN_ATTRS)
    return True, link_key(link) if link else None


def lun_indexes(tpg: str) -> list[int]:
    return [int(e[4:]) for e in listdir(os.path.join(tpg, "lun"))
            if e.startswith("lun_") and e[4:].isdigit()]


def lun_links(tpg: str) -> Iterator[tuple[int, str | None]]:
    base = Dir.at(os.path.join(tpg, "lun"))
    if base is None:
        return
    with base:
        for index, lun_dir in base.numbered("lun_"):
            link = lun_dir.link(_LUN_ATTRS)
            yield index, link_key(link) if link else None


def find_fileio(root: str, name: str) -> SoInfo | None:
    """The fileio backstore ``name``, without walking every object."""
    core = os.path.join(root, "core")
    for hba in listdir(core):
        path = os.path.join(core, hba, name)
        if hba.startswith("fileio_") and os.path.isdir(path):
            return SoInfo("fileio", name, f"{hba}/{name}", path)
    return None


def free_hba_index(root: str) -> int:
    """The lowest fileio HBA index with no directory. rtslib's own choice skips only HBAs
    that hold an object, and then fails on an empty one (left by a process killed between
    the two mkdirs of a create), as its stale-HBA check does not expect hba_info/hba_mode."""
    used = {int(h[7:]) for h in listdir(os.path.join(root, "core"))
            if h.startswith("fileio_") and h[7:].isdigit()}
    return next(i for i in range(len(used) + 1) if i not in used)


def users_of(root: str, key: str) -> list[str]:
    """Every LUN, on any target, that links the storage object ``key``."""
    return [lun_name(fabric, wwn, tag, index) for fabric, wwn, tag, path in _tpgs(root)
            for index, linked in lun_links(path) if linked == key]


def shape(root: str, iqn: str) -> tuple[tuple[str, ...], ...]:
    """The names that change whenever an object is made or removed anywhere that matters
    to this worker (fabrics, backstores, targets, our TPG's LUNs and ACLs): six directory
    listings, however many LUNs there are."""
    tpg = tpg_dir(root, iqn)
    return tuple(tuple(listdir(p)) for p in (
        root, os.path.join(root, "core"), os.path.join(root, "iscsi"),
        os.path.dirname(tpg), os.path.join(tpg, "lun"), os.path.join(tpg, "acls")))
