"""Reading the live LIO tree straight from configfs: storage objects, this worker's TPG,
LUNs, portals, access attributes, counters and sessions, plus the ownership verdict per
object.

Owns the interpretation of what configfs shows (including objects left half-made by a
process killed during a create: they are recognised so the next create can finish the job),
and does it with as few configfs calls as it can: no rtslib objects, no ``realpath`` (each
path component is a lookup), one ``readlink`` per LUN. Must not write anything: every
function here is read-only, so a converged target sees zero writes from a pass.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace

from sbps.backends.lio_acl import read_acls, read_chap
from sbps.backends.lio_rtslib import Dir, listdir, read_text
from sbps.model import NO_CHAP, VENDOR, Lun, LunStats, Portal, StorageObject, TargetState

TPG_TAG = 1
#: TPG attributes that decide who may read and whether anyone may write.
ACCESS_ATTRIBUTES = ("generate_node_acls", "demo_mode_write_protect", "cache_dynamic_acls",
                     "authentication", "prod_mode_write_protect")
#: HBA directory prefix -> rtslib's plugin name (what ``foreign`` reports).
PLUGINS = {"fileio": "fileio", "iblock": "block", "pscsi": "pscsi", "rd_mcp": "ramdisk",
           "user": "user"}
#: Entries of ``lun/lun_<n>`` that are not the link to the storage object.
_LUN_ATTRS = frozenset({"alua_tg_pt_gp", "alua_tg_pt_offline", "alua_tg_pt_status",
                        "alua_tg_pt_write_md", "statistics"})
_HBA_ATTRS = frozenset({"hba_info", "hba_mode"})
_NOT_TARGETS = frozenset({"discovery_auth", "lio_version", "version"})


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

    def fileio(self, name: str) -> SoInfo | None:
        return next((s for s in self.storage.values()
                     if s.plugin == "fileio" and s.name == name), None)


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
        for entry in base.names():
            if not entry.startswith("lun_") or not entry[4:].isdigit():
                continue
            lun_dir = Dir.at(entry, base)
            if lun_dir is None:
                continue  # removed meanwhile
            with lun_dir:
                link = lun_dir.link(_LUN_ATTRS)
            yield int(entry[4:]), link_key(link) if link else None


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


def describe(info: SoInfo, own: Ownership) -> StorageObject | None:
    """The model view of a fileio object, or None while it is half-made by sbps.

    Half-made means: never enabled with no backing file recorded, or backed in our cache
    and not (yet) carrying the identity sbps writes last (serial and product id both derived
    from the name), with no LUN linking it. rtslib's create writes mkdir, control, udev_path,
    enable and serial in that order, then sbps writes product id and vendor.
    """
    with Dir(info.path) as d:
        enable = d.read("enable")
        info_text = " ".join((d.read("info") or "").split())
        # fd_dev_name; rtslib writes the same path to udev_path after it.
        path = _field(info_text, "File") or d.read("udev_path") or ""
        if enable not in (None, "1"):
            if not path or (own.path_owned(path) and not info.users):
                return None
            return StorageObject(name=info.name, path=path, size=0, serial="", product_id="",
                                 vendor="", write_back=False, readonly=False)
        product, vendor = _inquiry(d, info.name)
        serial = d.read("wwn/vpd_unit_serial") or ""
        write_back = d.read("attrib/emulate_write_cache") == "1"
    state = StorageObject(
        name=info.name, path=path, size=int(_field(info_text, "Size") or 0),
        serial=serial.partition(":")[2].strip(), product_id=product, vendor=vendor,
        write_back=write_back, readonly=_readonly(path))
    if own.path_owned(state.path) and not info.users and not complete(state):
        return None
    return state


def _field(info: str, key: str) -> str:
    """A value of the ``info`` file (``File: <path> Size: <n> ...``); an empty ``File:``
    is empty, not the next word."""
    found = re.search(rf"(?:^| ){key}: (\S*)", info)
    value = found.group(1) if found else ""
    return "" if value.endswith(":") else value


def _inquiry(so: Dir, name: str) -> tuple[str, str]:
    """Product id and vendor. Kernels before 5.0 have no ``wwn/product_id`` or
    ``wwn/vendor_id``: the vendor is then always LIO-ORG, and the product id is the
    backstore name (first 15 characters) exactly when ``emulate_model_alias`` is set."""
    product = so.read("wwn/product_id")
    if product is None:
        product = name[:15] if so.read("attrib/emulate_model_alias") == "1" else ""
    vendor = so.read("wwn/vendor_id")
    return product, VENDOR if vendor is None else vendor


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


def target_state(iqn: str, tree: Tree, own: Ownership) -> TargetState:
    """The model view of a full scan."""
    stores: list[StorageObject] = []
    foreign: list[str] = []
    for info in tree.storage.values():
        if info.plugin != "fileio":
            foreign.append(f"{info.plugin}/{info.name}")
            continue
        so = describe(info, own)
        if so is None:
            continue  # half-made by an interrupted create; the next create finishes
        stores.append(so)
        if not own.owns(so):
            foreign.append(so.name)
    foreign += tree.other_luns
    names = {key: info.name for key, info in tree.storage.items()}
    luns = tuple(Lun(i, names.get(k, k.rpartition("/")[2])) for i, k in sorted(tree.luns.items()))
    state = TargetState(iqn=iqn, storage_objects=tuple(sorted(stores, key=lambda s: s.name)),
                        luns=luns, foreign=tuple(sorted(foreign)))
    return with_tpg(state, tree.tpg, acls=True)


def with_tpg(state: TargetState, tpg: str | None, *, acls: bool) -> TargetState:
    """``state`` with the TPG's own settings read now (a few files, whatever the number of
    LUNs); with ``acls`` also the node ACLs (one directory per initiator)."""
    d = Dir.at(tpg) if tpg is not None else None
    if tpg is None or d is None:
        return replace(state, exists=False, tpg_enabled=False, portals=frozenset(),
                       attributes=(), acls=(), chap=NO_CHAP)
    with d:
        values = ((name, d.read(f"attrib/{name}")) for name in ACCESS_ATTRIBUTES)
        return replace(state, exists=True, tpg_enabled=d.read("enable") == "1",
                       portals=portals(tpg),
                       attributes=tuple((n, v) for n, v in values if v is not None),
                       chap=read_chap(d), acls=read_acls(tpg) if acls else state.acls)


def portals(tpg: str) -> frozenset[Portal]:
    out = set()
    for name in listdir(os.path.join(tpg, "np")):
        address, _, port = name.rpartition(":")
        if address and port.isdigit():
            out.add(Portal(address, int(port)))
    return frozenset(out)


def lun_stats(tpg: str, indexes: Collection[int]) -> dict[int, LunStats]:
    """Per-LUN counters of the target port. The kernel counts read data in whole MiB
    (``read_mbytes``, bytes >> 20) and has no finer per-LUN byte counter; ``in_cmds``
    counts every command, the path checker's TEST UNIT READY included. A LUN removed
    meanwhile is left out."""
    out: dict[int, LunStats] = {}
    base = Dir.at(os.path.join(tpg, "lun")) if indexes else None
    if base is None:
        return out
    with base:
        for index in indexes:
            port = f"lun_{index}/statistics/scsi_tgt_port"
            mbytes = base.read(f"{port}/read_mbytes")
            cmds = base.read(f"{port}/in_cmds")
            if mbytes is not None and cmds is not None:
                out[index] = LunStats(index=index, read_bytes=int(mbytes or 0) << 20,
                                      commands=int(cmds or 0))
    return out


def session_initiators(tpg: str) -> tuple[str, ...]:
    """Logged-in initiators: dynamic sessions (generated ACLs) and explicit ACLs' ``info``."""
    names: set[str] = set()
    dynamic = read_text(os.path.join(tpg, "dynamic_sessions"))
    for entry in dynamic.replace("\0", "\n").splitlines():
        name = entry.split(",", 1)[0].strip()
        if name:
            names.add(name)
    for acl in listdir(os.path.join(tpg, "acls")):
        if "LIO Session ID" in read_text(os.path.join(tpg, "acls", acl, "info")):
            names.add(acl)
    return tuple(sorted(names))


def shape(root: str, iqn: str) -> tuple[tuple[str, ...], ...]:
    """The names that change whenever an object is made or removed anywhere that matters
    to this worker (fabrics, backstores, targets, our TPG's LUNs and ACLs): six directory
    listings, however many LUNs there are."""
    tpg = tpg_dir(root, iqn)
    return tuple(tuple(listdir(p)) for p in (
        root, os.path.join(root, "core"), os.path.join(root, "iscsi"),
        os.path.dirname(tpg), os.path.join(tpg, "lun"), os.path.join(tpg, "acls")))
