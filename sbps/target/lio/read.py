"""Reading the live LIO objects into the model: storage objects with the ownership verdict,
this worker's TPG (portals, access attributes, CHAP, ACLs), LUN counters and sessions.

Owns the interpretation of what configfs shows (including objects left half-made by a
process killed during a create: they are recognised so the next create can finish the job),
reading each object's files from its open directory (``lio_rtslib.Dir``); which objects
exist comes from ``lio_tree``. Must not write anything: every function here is read-only,
so a converged target sees zero writes from a pass.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass, replace

from sbps.core.model import VENDOR
from sbps.core.target_state import NO_CHAP, Lun, LunStats, Portal, StorageObject, TargetState
from sbps.target.lio.acl import read_acls, read_chap
from sbps.target.lio.plumbing import Dir, listdir, read_text
from sbps.target.lio.tree import SoInfo, Tree

#: TPG attributes that decide who may read and whether anyone may write.
ACCESS_ATTRIBUTES = ("generate_node_acls", "demo_mode_write_protect", "cache_dynamic_acls",
                     "authentication", "prod_mode_write_protect")


@dataclass
class ObjectOwnership:
    """What belongs to sbps: backed under the cache directory, or adopted by name."""

    cache_dir: str
    adopted: frozenset[str] = frozenset()

    def path_owned(self, path: str) -> bool:
        prefix = os.path.normpath(self.cache_dir) + "/"
        return os.path.normpath(path).startswith(prefix) if path else False

    def owns(self, so: StorageObject) -> bool:
        return self.path_owned(so.path) or so.name in self.adopted


def describe(info: SoInfo, own: ObjectOwnership) -> StorageObject | None:
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


def target_state(iqn: str, tree: Tree, own: ObjectOwnership) -> TargetState:
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


def acl_lun_stats(tpg: str, initiator: str) -> tuple[LunStats, ...] | None:
    """What ``initiator`` read per mapped LUN, from its explicit ACL's
    ``lun_N/statistics/scsi_auth_intr`` (whole MiB, as the kernel counts); None without an
    explicit ACL (a session of the generated ACLs is counted per LUN only). The LUN id is
    the one the mapped LUN links to."""
    acl = Dir.at(os.path.join(tpg, "acls", initiator))
    if acl is None:
        return None
    lun_dir = os.path.normpath(os.path.join(tpg, "lun"))
    out = []
    with acl:
        for _mapped, node in acl.numbered("lun_"):
            link = node.link(frozenset({"write_protect", "statistics"}))
            if link is None:
                continue
            target = os.path.normpath(os.path.join(node.path, link))
            if os.path.dirname(target) != lun_dir or not target[-1].isdigit():
                continue
            stats = "statistics/scsi_auth_intr"
            mbytes, cmds = node.read(f"{stats}/read_mbytes"), node.read(f"{stats}/num_cmds")
            if mbytes is not None and cmds is not None:
                out.append(LunStats(index=int(os.path.basename(target)[4:]),
                                    read_bytes=int(mbytes or 0) << 20, commands=int(cmds or 0)))
    return tuple(sorted(out, key=lambda s: s.index))


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


