"""A FILEIO storage object: ``target/core/fileio_<n>/<name>`` and everything the kernel puts in it.

Owns: the device state (control parameters, enable, serial and inquiry strings, attributes),
the ``info`` text that rtslib parses, and the per-device groups (attrib, wwn, pr, alua,
statistics). Must not: know about fabrics; TPG LUNs link to ``Device.group`` and the export
count is derived from those links.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .alua import alua_groups
from .attrs import line, parse_bool, parse_int, parse_str, values_group
from .nodes import Group, Show, Store, fail
from .stats import IoStats, device_statistics

BOOL_ATTRS = (
    "emulate_model_alias", "emulate_dpo", "emulate_fua_write", "emulate_fua_read",
    "emulate_write_cache", "emulate_ua_intlck_ctrl", "emulate_tas", "emulate_tpu",
    "emulate_tpws", "emulate_caw", "emulate_3pc", "emulate_pr", "pi_prot_verify",
    "enforce_pr_isids", "is_nonrot", "emulate_rest_reord", "force_pr_aptpl",
    "unmap_zeroes_data",
    # Writable booleans on kernel 6.1 (they switch passthrough ALUA/PGR off and on), so
    # rtslib saves and restores them.
    "alua_support", "pgr_support",
)
READONLY_ATTRS = ("hw_pi_prot_type", "hw_block_size", "hw_max_sectors", "hw_queue_depth")
# The kernel refuses these while the device is exported through a LUN.
LOCKED_WHEN_EXPORTED = ("block_size", "pi_prot_type", "pi_prot_format")


def default_attrib() -> dict[str, int | str]:
    values: dict[str, int | str] = dict.fromkeys(BOOL_ATTRS, 0)
    # Kernel 6.1 (Debian 12), measured by the realkernel lane's fidelity check: no
    # emulate_rsoc or submit_type yet, and emulate_model_alias off until someone sets it.
    values.update(emulate_dpo=1, emulate_fua_write=1, emulate_fua_read=1,
                  emulate_tas=1, emulate_caw=1, emulate_3pc=1, emulate_pr=1,
                  enforce_pr_isids=1)
    values.update(pi_prot_type=0, hw_pi_prot_type=0, pi_prot_format=0, hw_block_size=512,
                  block_size=512, hw_max_sectors=16384, optimal_sectors=16384,
                  hw_queue_depth=128, queue_depth=128, max_unmap_lba_count=8192,
                  max_unmap_block_desc_count=1, unmap_granularity=1,
                  unmap_granularity_alignment=0, max_write_same_len=4096, alua_support=1,
                  pgr_support=1)
    return dict(sorted(values.items()))


@dataclass(eq=False)
class Device:
    hba: int
    index: int
    name: str
    group: Group = field(init=False)
    fd_dev_name: str = ""
    fd_dev_size: int | None = None
    buffered: bool = False
    async_io: bool = False
    configured: bool = False
    udev_path: str = ""
    alias: str = ""
    wwn: dict[str, int | str] = field(default_factory=lambda: {
        "vpd_unit_serial": "", "vendor_id": "LIO-ORG", "product_id": "FILEIO",
        "revision": "4.0"})
    attrib: dict[str, int | str] = field(default_factory=default_attrib)
    io: IoStats = field(default_factory=IoStats)

    # DeviceView
    def hba_index(self) -> int:
        return self.hba

    def dev_index(self) -> int:
        return self.index

    def export_count(self) -> int:
        return len(self.group.linked_by)

    def serial(self) -> str:
        return str(self.wwn["vpd_unit_serial"])

    def vendor(self) -> str:
        return str(self.wwn["vendor_id"])

    def product(self) -> str:
        return str(self.wwn["product_id"])

    def revision(self) -> str:
        return str(self.wwn["revision"])

    def alua_members(self, tg_pt_gp: str) -> list[str]:
        members = []
        for link in self.group.linked_by:
            lun = link.parent.obj if link.parent is not None else None
            if lun is not None and lun.tg_pt_gp == tg_pt_gp:
                members.append(lun.member_name())
        return members

    def info(self) -> str:
        active = "ACTIVATED" if self.export_count() else "DEACTIVATED"
        hwmax = self.attrib["hw_max_sectors"] if self.configured else 0
        mode = "Buffered-WCE" if self.buffered else "O_DSYNC"
        # The kernel prints the HBA's queue depth, which fileio never sets, and its
        # per-HBA device count as the FILEIO ID (rtslib makes one device per HBA).
        return (f"Status: {active}  Max Queue Depth: 0  SectorSize: "
                f"{self.attrib['block_size']}  HwMaxSectors: {hwmax}\n"
                f"        TCM FILEIO ID: 0        File: {self.fd_dev_name}  "
                f"Size: {self.fd_dev_size or 0}  Mode: {mode} Async: {int(self.async_io)}\n")

    def control(self, text: str) -> None:
        for token in (t for t in text.strip().replace("\n", ",").split(",") if t):
            key, _, value = token.partition("=")
            if key == "fd_dev_name":
                if self.configured:
                    raise fail(errno.EEXIST, "device already configured")
                self.fd_dev_name = value
            elif key == "fd_dev_size":
                self.fd_dev_size = parse_int(value)
            elif key == "fd_buffered_io":
                self.buffered = bool(parse_bool(value))
                self.attrib["emulate_write_cache"] = int(self.buffered)
            elif key == "fd_async_io":
                self.async_io = bool(parse_bool(value))
            # like match_token(): unknown options are ignored

    def enable(self, text: str) -> None:
        if not parse_bool(text):
            raise fail(errno.EINVAL, "enable only accepts 1")
        if self.configured:
            raise fail(errno.EEXIST, "device already configured")
        if not self.fd_dev_name:
            raise fail(errno.EINVAL, "fd_dev_name not set")
        # Deviation: the kernel opens with O_CREAT; we refuse so tests can see a missing file.
        if not os.path.exists(self.fd_dev_name):
            raise fail(errno.ENOENT, f"backing file {self.fd_dev_name} missing")
        if os.path.isfile(self.fd_dev_name) and self.fd_dev_size is None:
            raise fail(errno.EINVAL, "fd_dev_size missing for a regular file")
        if self.fd_dev_size is None:
            self.fd_dev_size = os.stat(self.fd_dev_name).st_size
        self.configured = True

    def _guard_attrib(self, name: str, value: int | str) -> None:
        if name in LOCKED_WHEN_EXPORTED and self.export_count():
            raise fail(errno.EINVAL, f"cannot change {name} while exported")
        if name == "block_size" and value not in (512, 1024, 2048, 4096):
            raise fail(errno.EINVAL, "bad block_size")
        if name == "emulate_model_alias":
            # emulate_model_alias_store(): the product id becomes the backstore name,
            # truncated to 15 characters, or goes back to the plugin's default.
            if self.export_count():
                raise fail(errno.EINVAL, "cannot change the model alias while exported")
            self.wwn["product_id"] = self.name[:15] if value else "FILEIO"

    def _guard_wwn(self, name: str, value: int | str) -> None:
        if self.export_count():
            raise fail(errno.EINVAL, f"cannot set {name} while exported")
        limits = {"vpd_unit_serial": 254, "vendor_id": 8, "product_id": 16, "revision": 4}
        if len(str(value)) > limits.get(name, 254):
            raise fail(errno.EOVERFLOW, f"{name} too long")

    def build(self, group: Group) -> Group:
        self.group = group
        group.obj = self
        group.attr("info", show=self.info)
        group.attr("control", store=self.control)
        group.attr("enable", show=lambda: line(int(self.configured)), store=self.enable)
        group.attr("udev_path", show=lambda: line(self.udev_path) if self.udev_path else "",
                   store=self._set_udev_path)
        group.attr("alias", show=lambda: line(self.alias) if self.alias else "",
                   store=self._set_alias)
        group.attr("alua_lu_gp", show=lambda: "LU Group Alias: default_lu_gp\nLU Group ID: 0\n",
                   store=lambda text: None)
        group.attr("lba_map", show=lambda: "", store=lambda text: None)
        values_group(group.group("attrib"), self.attrib, readonly=READONLY_ATTRS,
                     booleans=BOOL_ATTRS, guard=self._guard_attrib)
        self._wwn_group(group.group("wwn"))
        self._pr_group(group.group("pr"))
        group.group("action")  # an empty group on kernel 6.1
        alua_groups(group, self)
        device_statistics(group, self)
        return group

    def _set_udev_path(self, text: str) -> None:
        self.udev_path = parse_str(text, 4096)

    def _set_alias(self, text: str) -> None:
        self.alias = parse_str(text, 125)

    def _wwn_group(self, wwn: Group) -> None:
        wwn.attr("vpd_unit_serial", show=lambda: f"T10 VPD Unit Serial Number: {self.serial()}\n",
                 store=self._set_serial)
        for name in ("vendor_id", "product_id", "revision"):
            wwn.attr(name, show=self._wwn_shower(name), store=self._wwn_storer(name))
        wwn.attr("company_id", show=lambda: "0x001405\n", store=lambda text: None)
        wwn.attr("vpd_protocol_identifier", show=lambda: "")
        for name in ("vpd_assoc_logical_unit", "vpd_assoc_target_port",
                     "vpd_assoc_scsi_target_device"):
            wwn.attr(name, show=lambda: "")

    def _wwn_shower(self, name: str) -> Show:
        return lambda: line(self.wwn[name])

    def _wwn_storer(self, name: str) -> Store:
        def store(text: str) -> None:
            value = parse_str(text)
            self._guard_wwn(name, value)
            self.wwn[name] = value
        return store

    def _set_serial(self, text: str) -> None:
        value = parse_str(text).strip()
        self._guard_wwn("vpd_unit_serial", value)
        self.wwn["vpd_unit_serial"] = value

    def _pr_group(self, pr: Group) -> None:
        pr.attr("res_holder", show=lambda: "No SPC-3 Reservation holder\n")
        pr.attr("res_pr_all_tgt_pts", show=lambda: "No SPC-3 Reservation holder\n")
        pr.attr("res_pr_generation", show=lambda: "0x00000000\n")
        pr.attr("res_pr_holder_tg_port", show=lambda: "No SPC-3 Reservation holder\n")
        pr.attr("res_pr_registered_i_pts", show=lambda: "SPC-3 PR Registrations:\nNone\n")
        pr.attr("res_pr_type", show=lambda: "No SPC-3 Reservation holder\n")
        pr.attr("res_type", show=lambda: "SPC3_PERSISTENT_RESERVATIONS\n")
        pr.attr("res_aptpl_active", show=lambda: "APTPL Bit Status: Disabled\n")
        pr.attr("res_aptpl_metadata", show=lambda: "Ready to process PR APTPL metadata..\n",
                store=lambda text: None)

