"""TPG LUNs, node ACLs and mapped LUNs: ``tpgt_n/lun/lun_<n>`` and ``tpgt_n/acls/<iqn>/lun_<n>``.

Owns: LUN-to-device links (export), mapped-LUN-to-LUN links, the per-LUN ALUA files and
statistics counters, ACL attributes/auth, and the ``info`` session text rtslib parses.
Must not: create TPGs or storage objects; the TPG object is passed in as ``TpgLike``.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .attrs import auth_group, line, parse_bool, parse_int, parse_str, values_group
from .nodes import Group, Link, fail
from .stats import IoStats, lun_statistics, mapped_lun_statistics

ACL_ATTRIB: dict[str, int | str] = {
    "authentication": -1, "dataout_timeout": 3, "dataout_timeout_retries": 5,
    "default_erl": 0, "nopin_response_timeout": 30, "nopin_timeout": 15,
    "random_datain_pdu_offsets": 0, "random_datain_seq_offsets": 0, "random_r2t_offsets": 0}


#: The negotiated session values an ACL shows in ``param/`` (kernel 6.1).
ACL_SESSION_PARAMS = ("DataPDUInOrder", "DataSequenceInOrder", "DefaultTime2Retain",
                      "DefaultTime2Wait", "ErrorRecoveryLevel", "FirstBurstLength",
                      "ImmediateData", "InitialR2T", "MaxBurstLength", "MaxConnections",
                      "MaxOutstandingR2T")


ALUA_FIELDS = {"alua_tg_pt_offline": "offline", "alua_tg_pt_status": "status",
               "alua_tg_pt_write_md": "write_md"}


class TpgLike(Protocol):
    wwn: str
    tag: int
    group: Group
    attrib: dict[str, int | str]
    sessions: dict[str, Any]
    param: dict[str, int | str]

    def allocate_rtpi(self) -> int: ...
    def acl(self, initiator: str) -> Any: ...


def _index(name: str, limit: int = 65535) -> int:
    match = re.fullmatch(r"lun_(\d+)", name)
    if match is None or int(match.group(1)) > limit:
        raise fail(errno.EINVAL, f"bad LUN name {name}")
    return int(match.group(1))


@dataclass(eq=False)
class TpgLun:
    tpg: TpgLike
    index: int
    group: Group
    tg_pt_gp: str = ""
    rtpi_value: int = 0
    io: IoStats = field(default_factory=IoStats)
    offline: int = 0
    status: int = 0
    write_md: int = 0

    @property
    def wwn(self) -> str:
        return self.tpg.wwn

    @property
    def tpgt(self) -> int:
        return self.tpg.tag

    def device(self) -> Any:
        links = self.group.links()
        return links[0].target.obj if links and links[0].target is not None else None

    def hba_index(self) -> int:
        dev = self.device()
        return int(dev.hba) if dev is not None else 0

    def dev_index(self) -> int:
        dev = self.device()
        return int(dev.index) if dev is not None else 0

    def rtpi(self) -> int:
        return self.rtpi_value

    def member_name(self) -> str:
        return f"iSCSI/{self.wwn}/tpgt_{self.tpgt}/lun_{self.index}"

    def build(self) -> Group:
        group = self.group
        group.obj = self
        group.allow_link = self._allow_link
        group.drop_link = self._drop_link
        group.attr("alua_tg_pt_gp", show=self._show_gp, store=self._store_gp)
        for name in ("alua_tg_pt_offline", "alua_tg_pt_status", "alua_tg_pt_write_md"):
            group.attr(name, show=self._alua_shower(name), store=self._alua_storer(name))
        lun_statistics(group, self)
        return group

    def _allow_link(self, group: Group, name: str, target: Group) -> None:
        if not target.path.startswith("target/core/") or target.path.count("/") != 3:
            raise fail(errno.EINVAL, "a LUN links to a storage object")
        if group.links():
            raise fail(errno.EEXIST, "LUN already has a storage object")
        if not getattr(target.obj, "configured", False):
            raise fail(errno.ENODEV, "storage object not configured (enable)")
        self.tg_pt_gp = "default_tg_pt_gp"
        self.rtpi_value = self.tpg.allocate_rtpi()

    def _drop_link(self, group: Group, link: Link) -> None:
        self.tg_pt_gp = ""

    def _show_gp(self) -> str:
        if self.device() is None:
            raise fail(errno.ENODEV)
        return (f"TG Port Alias: {self.tg_pt_gp}\nTG Port Group ID: 0\n"
                "TG Port Primary Access State: Active/Optimized\n"
                "TG Port Primary Access Status: None\n"
                f"TG Port Secondary Access State: {'Offline' if self.offline else 'None'}\n"
                "TG Port Secondary Access Status: None\n")

    def _store_gp(self, text: str) -> None:
        dev = self.device()
        if dev is None:
            raise fail(errno.ENODEV)
        name = parse_str(text).strip()
        alua = dev.group.children["alua"]
        if name not in alua.children:
            raise fail(errno.EINVAL, f"unknown ALUA group {name}")
        self.tg_pt_gp = name

    def _alua_shower(self, name: str) -> Any:
        return lambda: line(getattr(self, ALUA_FIELDS[name]))

    def _alua_storer(self, name: str) -> Any:
        attr = ALUA_FIELDS[name]

        def store(text: str) -> None:
            if self.device() is None:
                raise fail(errno.ENODEV)
            setattr(self, attr, parse_int(text) if attr == "status" else parse_bool(text))
        return store


def make_tpg_lun(parent: Group, name: str, tpg: TpgLike) -> Group:
    return TpgLun(tpg, _index(name), Group(name)).build()


@dataclass(eq=False)
class Acl:
    tpg: TpgLike
    initiator: str
    group: Group
    attrib: dict[str, int | str] = field(default_factory=lambda: dict(ACL_ATTRIB))
    auth: dict[str, int | str] = field(default_factory=dict)
    cmdsn_depth: int = 64
    tag: str = ""

    def build(self) -> Group:
        group = self.group
        group.obj = self
        self.cmdsn_depth = int(self.tpg.attrib["default_cmdsn_depth"])
        group.attr("info", show=self.info)
        group.attr("cmdsn_depth", show=lambda: line(self.cmdsn_depth), store=self._set_depth)
        group.attr("tag", show=lambda: line(self.tag) if self.tag else "", store=self._set_tag)
        attrib = values_group(group.group("attrib"), self.attrib)
        # The kernel keeps a u32 and prints it signed: the unset default reads as -1.
        # -1 means "inherit from the TPG"; the kernel takes -1, 0 or 1 and fails anything
        # else with EIO (measured on 6.1).
        attrib.attr("authentication", show=lambda: line(self.attrib["authentication"]),
                    store=self._set_authentication)
        auth_group(group.group("auth"), self.auth)
        param = group.group("param")
        for name in ACL_SESSION_PARAMS:
            param.attr(name, show=self._session_param(name))
        sess = group.group("fabric_statistics").group("iscsi_sess_stats")
        for name in ("cmd_pdus", "conn_digest_errors", "conn_timeout_errors", "indx", "node",
                     "rsp_pdus", "rxdata_octs", "txdata_octs"):
            sess.attr(name, show=lambda: "")  # empty until a session exists, as measured
        sess.attr("inst", show=lambda: "0\n")
        group.make = lambda p, name: MappedLun(self, _index(name), Group(name)).build()
        return group

    def _session_param(self, name: str) -> Callable[[], str]:
        def show() -> str:
            if self.initiator not in self.tpg.sessions:
                return "No Active iSCSI Session\n"
            return line(self.tpg.param.get(name, ""))
        return show

    def _set_authentication(self, text: str) -> None:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise fail(errno.EINVAL, f"invalid number {text!r}") from None
        if value not in (-1, 0, 1):
            raise fail(errno.EIO, "authentication must be -1, 0 or 1")
        self.attrib["authentication"] = value

    def _set_depth(self, text: str) -> None:
        value = parse_int(text)
        if not 1 <= value <= 512:
            raise fail(errno.EINVAL, "cmdsn_depth must be 1..512")
        self.cmdsn_depth = value

    def _set_tag(self, text: str) -> None:
        value = parse_str(text).strip()
        self.tag = "" if value == "NULL" else value

    def info(self) -> str:
        session = self.tpg.sessions.get(self.initiator)
        if session is None:
            return f"No active iSCSI Session for Initiator Endpoint: {self.initiator}\n"
        isid = " ".join(f"0x{session.isid[i:i + 2]}" for i in range(0, 12, 2))
        return (f"InitiatorName: {self.initiator}\nInitiatorAlias: \n"
                f"LIO Session ID: {session.sid}   ISID: {isid}  TSIH: {session.sid}  "
                "SessionType: Normal\nSession State: TARG_SESS_STATE_LOGGED_IN\n"
                "---------------------[iSCSI Session Values]-----------------------\n"
                "  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT\n"
                " 0x00000000   0x00000000   0x00000000   0x00000040   0x00000000   0x00000000\n"
                "----------------------[iSCSI Connections]-------------------------\n"
                "CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN\n"
                f"   Address {session.address} TCP  StatSN: 0x00000000\n")


def make_acl(parent: Group, name: str, tpg: TpgLike) -> Group:
    if len(name) >= 224:
        raise fail(errno.EINVAL, "initiator name too long")
    return Acl(tpg, name, Group(name)).build()


@dataclass(eq=False)
class MappedLun:
    acl: Acl
    index: int
    group: Group
    write_protect: int = 0
    io: IoStats = field(default_factory=IoStats)

    def build(self) -> Group:
        group = self.group
        group.obj = self
        group.allow_link = self._allow_link
        group.attr("write_protect", show=lambda: line(self.write_protect),
                   store=self._set_wp)
        mapped_lun_statistics(group, self.io, self.acl.initiator, self.index)
        return group

    def _set_wp(self, text: str) -> None:
        self.write_protect = parse_bool(text)

    def _allow_link(self, group: Group, name: str, target: Group) -> None:
        lun_dir = self.acl.tpg.group.children["lun"]
        if target.parent is not lun_dir:
            raise fail(errno.EINVAL, "mapped LUN must link to a LUN of the same TPG")
        if group.links():
            raise fail(errno.EEXIST, "mapped LUN already linked")
        # As target_fabric_mappedlun_link: a new mapping takes the TPG's
        # prod_mode_write_protect; write_protect written before the link is lost.
        self.write_protect = parse_bool(str(self.acl.tpg.attrib["prod_mode_write_protect"]))
