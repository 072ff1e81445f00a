"""The iSCSI fabric: ``target/iscsi/{lio_version, discovery_auth/, <iqn>/tpgt_<n>/...}``.

Owns: target and TPG creation (mkdir), TPG attribute/param/auth groups with the kernel's defaults,
network portals, ``enable``, ``dynamic_sessions`` and the simulated session table. Must not:
build LUN or ACL internals (``lun.py``) or touch storage objects directly.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field

from .attrs import auth_group, line, parse_bool, parse_str, values_group
from .lun import Acl, make_acl, make_tpg_lun
from .nodes import Group, fail

TPG_ATTRIB: dict[str, int | str] = {
    "authentication": 1, "cache_dynamic_acls": 0, "default_cmdsn_depth": 64,
    "default_erl": 0, "demo_mode_discovery": 1, "demo_mode_write_protect": 1,
    "fabric_prot_type": 0, "generate_node_acls": 0, "login_keys_workaround": 1,
    "login_timeout": 15, "netif_timeout": 2, "prod_mode_write_protect": 0, "t10_pi": 0,
    "tpg_enabled_sendtargets": 1}
TPG_BOOLS = ("authentication", "cache_dynamic_acls", "demo_mode_discovery",
             "demo_mode_write_protect", "generate_node_acls", "login_keys_workaround",
             "prod_mode_write_protect", "t10_pi", "tpg_enabled_sendtargets")
TPG_PARAM: dict[str, int | str] = {
    "AuthMethod": "CHAP", "DataDigest": "CRC32C,None", "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes", "DefaultTime2Retain": "20", "DefaultTime2Wait": "2",
    "ErrorRecoveryLevel": "0", "FirstBurstLength": "65536", "HeaderDigest": "CRC32C,None",
    "IFMarkInt": "Reject", "IFMarker": "No", "ImmediateData": "Yes", "InitialR2T": "Yes",
    "MaxBurstLength": "262144", "MaxConnections": "1", "MaxOutstandingR2T": "1",
    "MaxRecvDataSegmentLength": "8192", "MaxXmitDataSegmentLength": "262144",
    "OFMarkInt": "Reject", "OFMarker": "No", "TargetAlias": "LIO Target"}
PORTAL = re.compile(r"(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")


def make_iscsi_fabric(parent: Group, name: str) -> Group:
    fabric = Group(name, make=_make_target)
    fabric.attr("lio_version", show=lambda: "Datera Inc. iSCSI Target v4.1.0\n")
    ncpu = os.cpu_count() or 1
    cpus = {"list": f"0-{ncpu - 1}" if ncpu > 1 else "0"}
    fabric.attr("cpus_allowed_list", show=lambda: line(cpus["list"]),
                store=lambda text: cpus.update(list=parse_str(text).strip()))
    disc: dict[str, int | str] = {"enforce_discovery_auth": 0}
    disc_group = values_group(fabric.group("discovery_auth"), disc, booleans=disc)
    auth_group(disc_group, disc)
    return fabric


def _make_target(parent: Group, name: str) -> Group:
    if len(name) >= 224 or name.startswith("tpgt_"):
        raise fail(errno.EINVAL, f"bad target name {name}")
    target = Group(name, make=lambda p, tpg_name: Tpg.create(p, tpg_name))
    affinity = {"value": -1}
    target.group("param").attr("cmd_completion_affinity",
                               show=lambda: line(affinity["value"]),
                               store=lambda text: affinity.update(value=int(text.strip())))
    stats = target.group("fabric_statistics")
    for sub in ("iscsi_instance", "iscsi_sess_err", "iscsi_tgt_attr", "iscsi_login_stats",
                "iscsi_logout_stats"):
        stats.group(sub)
    return target


@dataclass
class Session:
    initiator: str
    sid: int
    isid: str
    address: str


@dataclass(eq=False)
class Tpg:
    wwn: str
    tag: int
    group: Group
    enabled: bool = False
    attrib: dict[str, int | str] = field(default_factory=lambda: dict(TPG_ATTRIB))
    param: dict[str, int | str] = field(default_factory=lambda: dict(TPG_PARAM))
    auth: dict[str, int | str] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    next_sid: int = 1
    next_rtpi: int = 1

    @classmethod
    def create(cls, parent: Group, name: str) -> Group:
        match = re.fullmatch(r"tpgt_(\d+)", name)
        if match is None or int(match.group(1)) > 0xFFFF:
            raise fail(errno.EINVAL, f"bad TPG name {name}")
        tpg = cls(parent.name, int(match.group(1)), Group(name))
        tpg.build()
        return tpg.group

    def build(self) -> None:
        group = self.group
        group.obj = self
        group.attr("enable", show=lambda: line(int(self.enabled)), store=self._set_enable)
        group.attr("dynamic_sessions", show=self._dynamic_sessions)
        values_group(group.group("attrib"), self.attrib, booleans=TPG_BOOLS,
                     guard=self._attrib_side_effects)
        values_group(group.group("param"), self.param, strings=self.param)
        auth_group(group.group("auth"), self.auth)
        group.group("np", make=_make_portal)
        group.group("lun", make=lambda p, name: make_tpg_lun(p, name, self))
        group.group("acls", make=lambda p, name: make_acl(p, name, self))

    def _attrib_side_effects(self, name: str, value: int | str) -> None:
        # iscsit_ta_authentication(): the TPG's AuthMethod follows the switch (measured on
        # kernel 6.1: a new TPG has authentication=1 and AuthMethod=CHAP).
        if name == "authentication":
            self.param["AuthMethod"] = "CHAP" if value else "CHAP,None"
        # iscsit_ta_generate_node_acls(): "Explicitly setting cache_dynamic_acls=1 when
        # generate_node_acls=1" (a field worker's TPG, provisioned by targetcli, has both).
        if name == "generate_node_acls" and value and not self.attrib["cache_dynamic_acls"]:
            self.attrib["cache_dynamic_acls"] = 1

    def _set_enable(self, text: str) -> None:
        self.enabled = bool(parse_bool(text))

    def acl(self, initiator: str) -> Acl | None:
        acls = self.group.children["acls"]
        assert isinstance(acls, Group)
        node = acls.children.get(initiator)
        return node.obj if isinstance(node, Group) else None

    def _dynamic_sessions(self) -> str:
        return "".join(f"{s.initiator},{s.isid}\n" for s in self.sessions.values()
                       if self.acl(s.initiator) is None)

    def add_session(self, initiator: str, address: str = "127.0.0.1") -> Session:
        if initiator in self.sessions:
            raise ValueError(f"{initiator} already has a session on {self.wwn}/tpgt_{self.tag}")
        if self.acl(initiator) is None and not int(self.attrib["generate_node_acls"]):
            raise ValueError(f"no ACL for {initiator} and generate_node_acls=0: login refused")
        sid = self.next_sid
        self.next_sid += 1
        session = Session(initiator, sid, f"{0x023D000000 + sid:012x}", address)
        self.sessions[initiator] = session
        return session

    def remove_session(self, initiator: str) -> None:
        if self.sessions.pop(initiator, None) is None:
            raise ValueError(f"no session for {initiator} on {self.wwn}/tpgt_{self.tag}")

    def allocate_rtpi(self) -> int:
        rtpi = self.next_rtpi
        self.next_rtpi += 1
        return rtpi


def _make_portal(parent: Group, name: str) -> Group:
    match = PORTAL.fullmatch(name)
    if match is None or int(match.group(2)) > 0xFFFF:
        raise fail(errno.EINVAL, f"bad network portal {name}")
    portal = Group(name)
    values_group(portal, {"iser": 0, "cxgbit": 0}, booleans=("iser", "cxgbit"),
                 guard=_offload_guard)
    return portal


def _offload_guard(name: str, value: int | str) -> None:
    if value:
        raise fail(errno.ENODEV, f"{name} offload is not available")
