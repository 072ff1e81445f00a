"""The fidelity check's rtslib operations, run the same way on the emulation (host) and on the
real kernel (guest): a script for any python3 with rtslib-fb 2.1.x or 2.2.x.

Owns one fixed sequence of the rtslib calls sbps, targetcli and target.service make (fileio
backstores with a serial and write-back off, inquiry fields, a target with TPG attributes,
parameters, a portal, LUNs, a node ACL with a write-protected mapped LUN, a second target
sharing a backstore, an extra ALUA group, enable, deletes), then prints the tree
(``lio_tree.dump``) and rtslib's own ``RTSRoot().dump()``, with the work folder and the tree's
root replaced by ``<work>`` and ``<root>``. Must not: touch anything but ``ROOT`` and ``WORK``.

    python3 fidelity_ops.py ROOT WORK    # ROOT = .../config/target, emptied first
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

from configfs.rtslib_compat import point_rtslib_at
from tests.realkernel.guest.lio_tree import clear, dump

IQN = "iqn.2023-06.csm.iscsi:fidelity"
OTHER = "iqn.2023-06.csm.iscsi:fidelity-other"
NODE = "iqn.2024-01.test.sbps:node1"
MIB = 1 << 20


def operations(root: str, work: str) -> list[str]:
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

    steps: list[str] = []
    os.makedirs(work, exist_ok=True)
    files = {}
    for name, size in (("fid_one", MIB), ("fid_two", 2 * MIB), ("fid_three", MIB)):
        files[name] = os.path.join(work, f"{name}.img")
        with open(files[name], "wb") as f:
            f.truncate(size)
    one = FileIOStorageObject("fid_one", files["fid_one"], size=MIB,
                              wwn="0123456789abcdef0123456789abcde", write_back=False)
    one.set_attribute("emulate_model_alias", "1")
    for field, value in (("product_id", "fid_one"), ("vendor_id", "LIO-ORG")):
        with open(os.path.join(one.path, "wwn", field), "w") as f:
            f.write(value + "\n")
    two = FileIOStorageObject("fid_two", files["fid_two"], size=2 * MIB,
                              wwn="fedcba9876543210fedcba987654321", write_back=True)
    three = FileIOStorageObject("fid_three", files["fid_three"], size=MIB,
                                wwn="00000000000000000000000000000aa", write_back=False)
    steps.append("backstores")
    iscsi = FabricModule("iscsi")
    tpg = TPG(Target(iscsi, IQN), 1)
    for key, value in (("generate_node_acls", "1"), ("demo_mode_write_protect", "1"),
                       ("cache_dynamic_acls", "1"), ("authentication", "0")):
        tpg.set_attribute(key, value)
    tpg.set_parameter("MaxRecvDataSegmentLength", "262144")
    NetworkPortal(tpg, "127.0.0.1", 3260)
    LUN(tpg, 17, one)
    LUN(tpg, 200, two)
    LUN(tpg, 5, three)
    acl = NodeACL(tpg, NODE)
    MappedLUN(acl, 3, 17, write_protect=True)
    acl.set_attribute("dataout_timeout", "5")
    tpg.enable = True
    steps.append("target")
    other = TPG(Target(iscsi, OTHER), 2)
    LUN(other, 3, one)
    steps.append("second target")
    try:
        from rtslib_fb import ALUATargetPortGroup

        ALUATargetPortGroup(one, "fid_gp", 7)
        steps.append("alua group")
    except ImportError:
        steps.append("no ALUATargetPortGroup in this rtslib")
    LUN(tpg, 200).delete()
    two.delete()
    steps.append("deletes")
    steps.append(json.dumps(RTSRoot().dump(), sort_keys=True))
    return steps


def normalize(value: Any, root: str, work: str) -> Any:
    text = json.dumps(value, sort_keys=True)
    text = text.replace(os.path.abspath(work), "<work>").replace(os.path.abspath(root),
                                                                 "<root>")
    return json.loads(text)


def main(argv: list[str]) -> int:
    root, work = os.path.abspath(argv[0]), os.path.abspath(argv[1])
    clear(root)
    with open(os.path.join(root, "dbroot")) as f:
        point_rtslib_at(root, f.read().strip())
    steps = operations(root, work)
    saved = json.loads(steps.pop())
    from rtslib_fb import __file__ as rtslib_file

    result = {"steps": steps, "rtslib": os.path.dirname(rtslib_file),
              "tree": dump(root), "dump": saved}
    clear(root)
    print(json.dumps(normalize(result, root, work), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
