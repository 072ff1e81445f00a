"""PyPI rtslib-fb (2.2.x), in process, against the emulation: create, read back, delete."""

from __future__ import annotations

import copy
import errno
import os
from pathlib import Path
from typing import Any

import pytest
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
from rtslib_fb.utils import RTSLibError

from configfs import Mounted

pytestmark = pytest.mark.integration

TARGET_IQN = "iqn.2024-01.org.sbps.test:img1"
INITIATOR_IQN = "iqn.2024-01.org.sbps.test:client1"


def build(backing: Path) -> tuple[Any, Any, Any, Any]:
    so = FileIOStorageObject("img1", str(backing), size=4 << 20, wwn="sbps-serial-0001")
    target = Target(FabricModule("iscsi"), TARGET_IQN)
    tpg = TPG(target, 1)
    lun = LUN(tpg, 17, so)
    NetworkPortal(tpg, "127.0.0.1", 3260)
    acl = NodeACL(tpg, INITIATOR_IQN)
    MappedLUN(acl, 0, lun, write_protect=True)
    tpg.enable = True
    return so, tpg, lun, acl


def test_create_and_read_back(rts: RTSRoot, backing: Path) -> None:
    so, tpg, lun, acl = build(backing)
    tpg.set_attribute("generate_node_acls", 1)
    tpg.set_attribute("demo_mode_write_protect", 1)

    [found] = list(rts.storage_objects)
    assert (found.name, found.plugin) == ("img1", "fileio")
    assert found.wwn == "sbps-serial-0001"
    assert found.udev_path == str(backing)
    assert found.size == 4 << 20
    assert found.status == "activated"
    [target] = list(rts.targets)
    assert target.wwn == TARGET_IQN
    [tpg_back] = list(target.tpgs)
    assert tpg_back.enable is True
    assert tpg_back.get_attribute("generate_node_acls") == "1"
    assert tpg_back.get_attribute("demo_mode_write_protect") == "1"
    [lun_back] = list(tpg_back.luns)
    assert lun_back.lun == 17
    assert lun_back.storage_object == so
    assert lun_back.alua_tg_pt_gp_name == "default_tg_pt_gp"
    [portal] = list(tpg_back.network_portals)
    assert (portal.ip_address, portal.port) == ("127.0.0.1", 3260)
    [acl_back] = list(tpg_back.node_acls)
    [mapped] = list(acl_back.mapped_luns)
    assert (mapped.mapped_lun, mapped.tpg_lun.lun, mapped.write_protect) == (0, 17, True)
    assert acl_back.session is None


def test_dump_restore_round_trip(rts: RTSRoot, backing: Path) -> None:
    build(backing)
    saved = rts.dump()
    rts.clear_existing(confirm=True)
    assert list(rts.storage_objects) == [] and list(rts.targets) == []
    assert rts.restore(copy.deepcopy(saved)) == []  # restore() consumes its argument
    assert rts.dump() == saved


def test_linked_storage_object_cannot_be_removed(rts: RTSRoot, backing: Path) -> None:
    so, _tpg, lun, _acl = build(backing)
    with pytest.raises(OSError) as raised:
        os.rmdir(so.path)
    assert raised.value.errno == errno.EBUSY
    with pytest.raises(OSError) as raised:
        os.rmdir(lun.path)  # a mapped LUN links to it, and it holds its own symlink
    assert raised.value.errno in (errno.EBUSY, errno.ENOTEMPTY)
    so.delete()  # rtslib removes the LUNs (and their mapped LUNs) first
    assert list(rts.storage_objects) == []
    assert list(rts.luns) == []


def test_enable_fails_when_backing_file_missing(rts: RTSRoot, tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        FileIOStorageObject("gone", str(tmp_path / "missing.img"), size=1 << 20)
    assert raised.value.errno == errno.ENOENT
    assert list(rts.storage_objects) == []


def test_sessions_show_in_acl_info(rts: RTSRoot, emulation: Mounted, backing: Path) -> None:
    _so, tpg, _lun, acl = build(backing)
    sid = emulation.control.add_session(TARGET_IQN, INITIATOR_IQN)
    session = acl.session
    assert session is not None
    assert (session["id"], session["state"]) == (sid, "LOGGED_IN")
    assert session["connections"][0]["address"] == "127.0.0.1"
    assert [s["parent_nodeacl"].node_wwn for s in rts.sessions] == [INITIATOR_IQN]
    emulation.control.remove_session(TARGET_IQN, INITIATOR_IQN)
    assert acl.session is None


def test_unknown_fabric_is_refused_like_a_missing_module(rts: RTSRoot) -> None:
    with pytest.raises(RTSLibError):
        FabricModule("loopback")._check_self()


def test_reading_everything_back_makes_no_writes(rts: RTSRoot, emulation: Mounted,
                                                backing: Path) -> None:
    build(backing)
    emulation.control.reset_counters()
    again = RTSRoot()
    again.dump()
    list(again.sessions)
    [so] = list(again.storage_objects)
    assert so.status == "activated" and list(so.attached_luns)
    assert emulation.control.writes() == 0
    FileIOStorageObject("img1")  # lookup mode
    assert emulation.control.counters()["log"] == []
