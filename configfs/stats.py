"""Statistics groups (``statistics/`` below devices, TPG LUNs and mapped LUNs) and their counters.

Owns: the I/O counters that simulated traffic updates and the read-only files that show them in
the kernel's units (MiB rounded down, as ``>> 20``). Must not: create or remove LIO objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .attrs import line
from .nodes import Group


@dataclass
class IoStats:
    cmds: int = 0
    read_bytes: int = 0
    write_bytes: int = 0

    def add(self, cmds: int, read_bytes: int = 0, write_bytes: int = 0) -> None:
        self.cmds += cmds
        self.read_bytes += read_bytes
        self.write_bytes += write_bytes


def _ro(group: Group, values: dict[str, Callable[[], object]]) -> Group:
    for name, get in values.items():
        group.attr(name, show=_shower(get))
    return group


def _shower(get: Callable[[], object]) -> Callable[[], str]:
    return lambda: line(get())


def device_statistics(parent: Group, dev: DeviceView) -> Group:
    """``<so>/statistics/{scsi_dev, scsi_tgt_dev, scsi_lu}`` (target_core_stat.c)."""
    stats = parent.group("statistics")
    created = int(time.time() * 100)
    _ro(stats.group("scsi_dev"), {
        "inst": dev.hba_index, "indx": dev.dev_index, "role": lambda: "Target",
        "ports": dev.export_count})
    tgt_dev = _ro(stats.group("scsi_tgt_dev"), {
        "inst": dev.hba_index, "indx": dev.dev_index, "num_lus": lambda: 1,
        "non_access_lus": lambda: 0 if dev.export_count() else 1,
        "resets": lambda: 0, "aborts_complete": lambda: 0, "aborts_no_task": lambda: 0})
    # The kernel prints this one without a newline.
    tgt_dev.attr("status", show=lambda: "activated" if dev.export_count() else "deactivated")
    io = dev.io
    _ro(stats.group("scsi_lu"), {
        "inst": dev.hba_index, "dev": dev.dev_index, "indx": lambda: 1, "lun": lambda: 0,
        "lu_name": lambda: dev.serial() or "None",
        # Padded to the INQUIRY field widths, as the kernel prints them.
        "vend": lambda: f"{dev.vendor():<8}", "prod": lambda: f"{dev.product():<16}",
        "rev": lambda: f"{dev.revision():<4}", "dev_type": lambda: 0,
        "status": lambda: "available" if dev.export_count() else "notavailable",
        "state_bit": lambda: "exposed", "num_cmds": lambda: io.cmds,
        "read_mbytes": lambda: io.read_bytes >> 20, "write_mbytes": lambda: io.write_bytes >> 20,
        "resets": lambda: 0, "full_stat": lambda: 0, "hs_num_cmds": lambda: 0,
        "creation_time": lambda: created})
    return stats


def lun_statistics(parent: Group, port: PortView) -> Group:
    """``lun/lun_N/statistics/{scsi_port, scsi_tgt_port, scsi_transport}``."""
    stats = parent.group("statistics")
    io = port.io
    _ro(stats.group("scsi_port"), {
        "inst": port.hba_index, "dev": port.dev_index, "indx": port.rtpi,
        "role": lambda: f"Device{port.dev_index()}", "busy_count": lambda: 0})
    _ro(stats.group("scsi_tgt_port"), {
        "inst": port.hba_index, "dev": port.dev_index, "indx": port.rtpi,
        "name": lambda: f"iSCSIPort#{port.tpgt}",
        "port_index": lambda: f"{port.wwn}+t+{port.tpgt}",
        "in_cmds": lambda: io.cmds, "write_mbytes": lambda: io.write_bytes >> 20,
        "read_mbytes": lambda: io.read_bytes >> 20, "hs_in_cmds": lambda: 0})
    _ro(stats.group("scsi_transport"), {
        "inst": port.hba_index, "device": lambda: "scsiTransportiSCSI",
        "indx": lambda: port.tpgt, "dev_name": lambda: f"{port.wwn}+t+{port.tpgt}",
        "proto_id": lambda: 5})
    return stats


def mapped_lun_statistics(parent: Group, io: IoStats, initiator: str, mapped_lun: int) -> Group:
    """``acls/<iqn>/lun_N/statistics/{scsi_auth_intr, scsi_att_intr_port}``."""
    stats = parent.group("statistics")
    _ro(stats.group("scsi_auth_intr"), {
        "inst": lambda: 0, "dev": lambda: 0, "port": lambda: 0, "indx": lambda: 0,
        "dev_or_port": lambda: 1, "intr_name": lambda: initiator,
        "map_indx": lambda: 0, "att_count": lambda: 0, "num_cmds": lambda: io.cmds,
        "read_mbytes": lambda: io.read_bytes >> 20, "write_mbytes": lambda: io.write_bytes >> 20,
        "hs_num_cmds": lambda: 0, "creation_time": lambda: 0, "row_status": lambda: "Ready"})
    _ro(stats.group("scsi_att_intr_port"), {
        "inst": lambda: 0, "dev": lambda: 0, "port": lambda: 0, "indx": lambda: mapped_lun,
        "port_auth_indx": lambda: 0, "port_ident": lambda: initiator})
    return stats


class DeviceView(Protocol):
    """What device statistics need to read from a storage object."""

    io: IoStats

    def hba_index(self) -> int: ...
    def dev_index(self) -> int: ...
    def export_count(self) -> int: ...
    def serial(self) -> str: ...
    def vendor(self) -> str: ...
    def product(self) -> str: ...
    def revision(self) -> str: ...


class PortView(Protocol):
    """What LUN statistics need to read from a TPG LUN."""

    io: IoStats

    @property
    def wwn(self) -> str: ...
    @property
    def tpgt(self) -> int: ...
    def hba_index(self) -> int: ...
    def dev_index(self) -> int: ...
    def rtpi(self) -> int: ...
