"""Run by Debian's /usr/bin/python3 (python3-rtslib-fb 2.1.75) against a mounted emulation.

Owns: one create/read-back/delete pass through the Debian rtslib; prints a JSON report.
Must not: run against a real /sys/kernel/config (it is pointed at the given mount only).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import rtslib_fb
from rtslib_fb import (
    LUN,
    TPG,
    FabricModule,
    FileIOStorageObject,
    MappedLUN,
    NetworkPortal,
    NodeACL,
    RTSRoot,
    Target,
)

from configfs.rtslib_compat import point_rtslib_at


def main(mount: str, backing: str, dbroot: str, target_iqn: str, initiator: str) -> None:
    point_rtslib_at(os.path.join(mount, "target"), dbroot)
    root = RTSRoot()
    so = FileIOStorageObject("deb1", backing, size=os.path.getsize(backing), wwn="deb-serial-1")
    tpg = TPG(Target(FabricModule("iscsi"), target_iqn), 1)
    lun = LUN(tpg, 17, so)
    NetworkPortal(tpg, "127.0.0.1", 3260)
    MappedLUN(NodeACL(tpg, initiator), 0, lun)
    tpg.enable = True
    tpg.set_attribute("generate_node_acls", 1)
    tpg.set_attribute("demo_mode_write_protect", 1)
    report = {
        "rtslib_file": rtslib_fb.__file__,
        "storage_objects": [(s.plugin, s.name, s.wwn, s.udev_path, s.size)
                            for s in root.storage_objects],
        "targets": [t.wwn for t in root.targets],
        "luns": [(x.lun, x.storage_object.name) for x in root.luns],
        "mapped": [(m.mapped_lun, m.tpg_lun.lun) for m in root.mapped_luns],
        "tpg_enable": tpg.enable,
        "gen_acls": tpg.get_attribute("generate_node_acls"),
    }
    try:
        os.rmdir(so.path)
        report["rmdir_errno"] = 0
    except OSError as e:
        report["rmdir_errno"] = e.errno or 0
    so.delete()
    report["after_delete"] = [s.name for s in root.storage_objects]
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:6])
