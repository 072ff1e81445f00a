"""Parsing what tgt 1.0.85 prints, and the pure tgt mapping (text captured from tgtd)."""

from __future__ import annotations

import dataclasses

import pytest

from sbps.config import load
from sbps.core.errors import BackendError, ConfigError
from sbps.target.tgt.mapping import (
    SessionCounters,
    acl_args,
    attributes,
    lun_name,
    marked,
    marked_legacy,
    marked_wwid,
    scsi_id,
)
from sbps.target.tgt.tgtadm import StatRow, TgtLun, parse_portals, parse_show, parse_stat

SHOW = """\
Target 1: iqn.2023-06.csm.iscsi:test1
    System information:
        Driver: iscsi
        State: offline
    I_T nexus information:
        I_T nexus: 2
            Initiator: iqn.2024-01.test:init1 alias: none
            Connection: 0
                IP Address: 127.0.0.1
        I_T nexus: 3
            Initiator: iqn.2024-01.test:init2 alias: node7
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags:
        LUN: 17
            Type: disk
            SCSI ID: abcdef012345678
            SCSI SN: abcdef0123456789abcdef012345678
            Size: 3 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: Yes
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /var/lib/sbps/cache/a b
            Backing store flags:
    Account information:
        u1
        out1 (outgoing)
    ACL information:
        ALL
        10.1.1.0/24
        iqn.2024-01.test:a
Target 2: iqn.2001-04.com.example:foreign
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
    Account information:
    ACL information:
""".replace("flags:\n", "flags: \n")  # tgt prints a trailing space there

STAT = """\
tgt lun sid rd_subm(bytes,cmds) rd_done(bytes,cmds) wr_subm(bytes,cmds) wr_done(bytes,cmds) errs
  1   0   2            0      0            0      0            0      0            0      0    0
  1  17   2         8192      2         8192      2            0      0            0      0    1
  1  17   3         4096      1         4096      1            0      0            0      0    1
"""


def test_show_is_parsed_field_by_field() -> None:
    first, second = parse_show(SHOW)
    assert (first.tid, first.name, first.state) == (1, "iqn.2023-06.csm.iscsi:test1",
                                                   "offline")
    assert [(n.sid, n.initiator, n.addresses) for n in first.nexus] == [
        (2, "iqn.2024-01.test:init1", ("127.0.0.1",)),
        (3, "iqn.2024-01.test:init2", ("127.0.0.1",))]
    controller, disk = first.luns
    assert (controller.index, controller.type, controller.path) == (0, "controller", "")
    assert disk == TgtLun(17, "disk", "abcdef012345678", "abcdef0123456789abcdef012345678",
                          3, 512, True, True, "rdwr", "/var/lib/sbps/cache/a b")
    assert first.accounts == ("u1",)
    assert first.acl == ("ALL", "10.1.1.0/24", "iqn.2024-01.test:a")
    assert (second.tid, second.state, second.luns, second.acl) == (2, "ready", (), ())


def test_stat_and_portals() -> None:
    assert parse_stat(STAT)[1] == StatRow(1, 17, 2, 8192, 2, 0, 0, 1)
    assert len(parse_stat(STAT)) == 3
    assert parse_stat(STAT.splitlines()[0]) == ()
    assert parse_portals("Portal: 127.0.0.1:3261,1\nPortal: [::1]:3260,1\n") == (
        "127.0.0.1:3261", "[::1]:3260")


def test_marks_names_attributes_and_acl_arguments() -> None:
    first, _ = parse_show(SHOW)
    disk = first.luns[1]
    assert marked(disk) and lun_name(disk) == "abcdef012345678"
    assert not marked(first.luns[0]) and lun_name(first.luns[0]) == "tgt-lun0"
    assert dict(attributes(first)) == {"authentication": "1", "cache_dynamic_acls": "1",
                                       "demo_mode_write_protect": "1",
                                       "generate_node_acls": "1",
                                       "prod_mode_write_protect": "1"}
    assert acl_args("ALL") == ["--initiator-address", "ALL"]
    assert acl_args("10.1.1.0/24") == ["--initiator-address", "10.1.1.0/24"]
    assert acl_args("iqn.2024-01.test:a") == ["--initiator-name", "iqn.2024-01.test:a"]


def test_the_naa_mark_and_the_legacy_mark_are_both_ours_under_the_same_name() -> None:
    serial = "abcdef0123456789abcdef012345678"
    assert scsi_id(serial) == "6001405abcdef0123456789abcdef012"
    legacy = parse_show(SHOW)[0].luns[1]
    new = dataclasses.replace(legacy, scsi_id=scsi_id(serial))
    assert marked_legacy(legacy) and not marked_wwid(legacy)
    assert marked_wwid(new) and not marked_legacy(new)
    assert lun_name(new) == lun_name(legacy) == "abcdef012345678"
    for other in ("6001405abcdef0123456789abcdef013", "6001405", "IET     00010011",
                  "abcdef012345679"):
        foreign = dataclasses.replace(legacy, scsi_id=other)
        assert not marked(foreign) and lun_name(foreign) == "tgt-lun17", other
    with pytest.raises(BackendError, match="hex"):
        scsi_id("beaf11")


def test_counters_never_fall_when_a_session_logs_out() -> None:
    first, _ = parse_show(SHOW)
    luns = (first.luns[1],)
    c = SessionCounters()
    assert c.update(parse_stat(STAT), luns)[17].read_bytes == 12288
    only_sid_3 = tuple(r for r in parse_stat(STAT) if r.sid == 3)
    assert c.update(only_sid_3, luns)[17].read_bytes == 12288
    assert c.update((), luns)[17].read_bytes == 12288
    assert c.update((StatRow(1, 17, 4, 512, 1, 0, 0, 0),), luns)[17].read_bytes == 12800
    c.forget(17)
    assert c.update((), luns)[17].read_bytes == 0


def test_tgt_configuration_keys_are_checked() -> None:
    env = {"SBPS_MARSHAL_TARGET_BACKEND": "tgt", "SBPS_MARSHAL_TARGET_ACCESS": "acl"}
    with pytest.raises(ConfigError, match="target.initiators"):
        load(None, env=env)
    env["SBPS_MARSHAL_TARGET_INITIATORS"] = "iqn.2024-01.site:node1,10.0.0.0/24"
    assert load(None, env=env).config.target.initiators == ("iqn.2024-01.site:node1",
                                                            "10.0.0.0/24")
    with pytest.raises(ConfigError, match="chap"):
        load(None, env={"SBPS_MARSHAL_TARGET_CHAP_USER_FILE": "/etc/sbps/chap-user"})
