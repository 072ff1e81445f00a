"""The top of the emulated tree: ``target/{version, dbroot, core/}`` and HBA directories.

Owns: the root group, ``core/alua/lu_gps``, HBA creation (``core/<plugin>_<n>``) with
``hba_info``/``hba_mode``, storage-object mkdir below an HBA, and the ``dbroot`` rules.
Must not: build fabric objects (``iscsi.py``) or device internals (``device.py``).
"""

from __future__ import annotations

import errno
import os
import platform
import re
from collections.abc import Callable

from .attrs import line, parse_str
from .device import Device
from .nodes import Group, fail

VERSION = "v5.0"
PLUGINS = ("fileio",)
# Fabrics the emulation can "load" when rtslib mkdirs target/<fabric>.
FabricFactory = Callable[[Group, str], Group]


class Core:
    def __init__(self, fabrics: dict[str, FabricFactory], dbroot: str = "/var/target") -> None:
        self.fabrics = fabrics
        self.dbroot = dbroot
        self.next_hba = 1
        self.root = Group("")
        self.target = self.root.group("target", make=self._make_fabric)
        self.target.attr("version", show=lambda: line(
            f"Target Engine Core ConfigFS Infrastructure {VERSION} on "
            f"{platform.system()}/{platform.machine()} on {platform.release()}"))
        self.target.attr("dbroot", show=lambda: line(self.dbroot), store=self._set_dbroot)
        self.core = self.target.group("core", make=self._make_hba)
        alua = self.core.group("alua")
        lu_gps = alua.group("lu_gps", make=lambda parent, name: _lu_gp(name, None))
        default_lu_gp = _lu_gp("default_lu_gp", 0, self._lu_gp_members)
        default_lu_gp.default = True
        lu_gps.add(default_lu_gp)

    def _lu_gp_members(self) -> str:
        # Every enabled device joins default_lu_gp (core_alua_attach_lu_gp_mem at enable).
        return "".join(f"fileio_{d.index}/{d.name}\n" for d in self.devices() if d.configured)

    def devices(self) -> list[Device]:
        return [so.obj for hba in self.core.items() for so in hba.items()
                if isinstance(so.obj, Device)]

    def _make_fabric(self, parent: Group, name: str) -> Group:
        factory = self.fabrics.get(name)
        if factory is None:
            # the kernel tries request_module() and fails the same way without the module
            raise fail(errno.ENOENT, f"no fabric module for {name}")
        return factory(parent, name)

    def _set_dbroot(self, text: str) -> None:
        if self.devices():
            raise fail(errno.EINVAL, "db_root: cannot be changed: target devices registered")
        value = parse_str(text, 4095).strip()
        if not os.path.isdir(value):
            raise fail(errno.EINVAL, f"db_root: {value} is not a directory")
        self.dbroot = value

    def _make_hba(self, parent: Group, name: str) -> Group:
        match = re.fullmatch(r"([a-z_]+)_(\d+)", name)
        if match is None or match.group(1) not in PLUGINS:
            raise fail(errno.EINVAL, f"unsupported HBA {name}")
        hba_id = self.next_hba
        self.next_hba += 1
        plugin = match.group(1)
        group = Group(name, make=lambda p, so_name: self._make_device(p, so_name, hba_id))
        group.attr("hba_info", show=lambda: (
            f"HBA Index: {hba_id} plugin: {plugin} version: {VERSION}\n"))
        group.attr("hba_mode", show=lambda: "0\n", store=lambda text: None)
        return group

    def _make_device(self, parent: Group, name: str, hba_id: int) -> Group:
        index = int(parent.name.rsplit("_", 1)[1])
        return Device(hba=hba_id, index=index, name=name).build(Group(name))


def _lu_gp(name: str, ident: int | None,
           members: Callable[[], str] = lambda: "") -> Group:
    state = {"id": ident}
    group = Group(name)

    def store_id(text: str) -> None:
        state["id"] = int(text.strip())

    group.attr("lu_gp_id", show=lambda: line("" if state["id"] is None else state["id"]),
               store=store_id)
    group.attr("members", show=members)
    return group
