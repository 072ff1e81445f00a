"""Pure mapping between tgt's parsed state and the sbps model, for ``sbps.target.tgt.backend``.

Owns the conventions the tgt backend relies on: which LUNs carry sbps's mark, how a LUN is
named as a storage object, the ``scsi_id`` that makes tgt present LIO's WWID, how tgt's
ACL, CHAP and read-only state read as LIO TPG attributes, what tgt accepts in ``--params``,
and per-LUN counters that survive session logouts. Must not run ``tgtadm``.

WWID: tgt 1.0.85 builds the NAA-6 designator of VPD 0x83 from the hex digits of the LU's
``scsi_id``, right-adjusted in 128 bits, and forces the top nibble to 6 (usr/spc.c
``update_vpd_83``). ``scsi_id = 6001405 + serial[:25]`` (32 hex digits) therefore gives
the NAA ``6001405<serial[:25]>`` LIO derives from the same serial, and Linux's WWID
``36001405<serial[:25]>``: one rule for both backends. The mark is that ``scsi_id`` next
to ``scsi_sn`` = the serial; the storage object's name is ``scsi_sn[:15]``.

LUNs made before (mark: ``scsi_id`` = ``scsi_sn[:15]``, tgt's own NAA) are still ours,
under the same name, and kept as they are: changing the identity of a LUN a node has open
would change its WWID under the node's multipath. They get the new form when they are
made again (tgtd restart, or retired and re-exported).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sbps.core.errors import BackendError
from sbps.core.target_state import LunStats, Portal, StorageObject
from sbps.target.tgt.tgtadm import StatRow, TgtLun, TgtTarget

_PARAM_RE = re.compile(r"^[0-9A-Za-z._-]+$")


class SessionCounters:
    """Per-LUN totals from tgt's per-session rows, kept monotonic across logouts."""

    def __init__(self) -> None:
        self._live: dict[tuple[int, int], tuple[int, int]] = {}
        self._closed: dict[int, tuple[int, int]] = {}

    def update(self, rows: tuple[StatRow, ...], luns: tuple[TgtLun, ...]) -> dict[int, LunStats]:
        live: dict[tuple[int, int], tuple[int, int]] = {}
        for row in rows:
            if row.lun != 0:
                live[(row.lun, row.sid)] = (row.read_bytes, row.read_cmds + row.write_cmds)
        for key, (nbytes, cmds) in self._live.items():
            now = live.get(key)
            if now is None or now[0] < nbytes or now[1] < cmds:
                # The session logged out (or tgt reset its row): keep what it had read.
                b, c = self._closed.get(key[0], (0, 0))
                self._closed[key[0]] = (b + nbytes, c + cmds)
        self._live = live
        out: dict[int, LunStats] = {}
        for lu in luns:
            b, c = self._closed.get(lu.index, (0, 0))
            for (index, _sid), (nbytes, cmds) in live.items():
                if index == lu.index:
                    b, c = b + nbytes, c + cmds
            out[lu.index] = LunStats(lu.index, read_bytes=b, commands=c)
        return out

    def forget(self, index: int) -> None:
        """A LUN was deleted: a new LUN at that index starts from zero."""
        self._closed.pop(index, None)
        self._live = {k: v for k, v in self._live.items() if k[0] != index}


def data_luns(target: TgtTarget | None) -> tuple[TgtLun, ...]:
    if target is None:
        return ()
    return tuple(lu for lu in target.luns if lu.index != 0 and lu.type != "controller")


def half_made(lu: TgtLun) -> bool:
    """A LUN ``TgtBackend._create_lun`` made but did not finish (killed in between): no
    file, offline, no identity. ``read()`` leaves it out; ``CreateLun`` replaces it."""
    return not lu.path and not lu.online and not marked(lu)


NAA_PREFIX = "6001405"
_SERIAL_RE = re.compile(r"^[0-9a-f]{25,36}$")


def scsi_id(serial: str) -> str:
    """The ``scsi_id`` that makes tgt present LIO's NAA for ``serial`` (module docstring)."""
    if not _SERIAL_RE.match(serial):
        raise BackendError("create LUN", serial, "the serial must be 25 to 36 lowercase hex "
                           "digits to carry an NAA WWID on tgt")
    return NAA_PREFIX + serial[:25]


def marked_wwid(lu: TgtLun) -> bool:
    """Our mark of today: tgt presents ``3`` + ``scsi_id`` as the WWID, as LIO does."""
    return bool(_SERIAL_RE.match(lu.scsi_sn)) and lu.scsi_id == NAA_PREFIX + lu.scsi_sn[:25]


def marked_legacy(lu: TgtLun) -> bool:
    """The mark of LUNs made before the NAA rule (tgt's own NAA WWID): still ours."""
    return len(lu.scsi_id) == 15 and lu.scsi_sn[:15] == lu.scsi_id


def marked(lu: TgtLun) -> bool:
    return marked_wwid(lu) or marked_legacy(lu)


def lun_name(lu: TgtLun) -> str:
    return lu.scsi_sn[:15] if marked(lu) else f"tgt-lun{lu.index}"


def lun_size(lu: TgtLun) -> int:
    try:
        return os.stat(lu.path).st_size
    except OSError:
        return lu.size_mb * 1000 * 1000


def storage_of(lu: TgtLun) -> StorageObject:
    return StorageObject(name=lun_name(lu), path=lu.path, size=lun_size(lu), serial=lu.scsi_sn,
                         product_id=lun_name(lu))


def attributes(target: TgtTarget) -> tuple[tuple[str, str], ...]:
    acl_all = "1" if "ALL" in target.acl else "0"
    protected = all(lu.readonly for lu in data_luns(target) if marked(lu))
    wp = "1" if protected else "0"
    return (("authentication", "1" if target.accounts else "0"),
            ("cache_dynamic_acls", acl_all), ("demo_mode_write_protect", wp),
            ("generate_node_acls", acl_all), ("prod_mode_write_protect", wp))


def acl_args(entry: str) -> list[str]:
    if entry.startswith(("iqn.", "eui.", "naa.")):
        return ["--initiator-name", entry]
    return ["--initiator-address", entry]


def parse_portal(text: str) -> Portal:
    host, _, port = text.rpartition(":")
    return Portal(host.strip("[]"), int(port))


def checked(so: StorageObject) -> StorageObject:
    for field, value, limit in (("name", so.name, 16), ("product_id", so.product_id, 16),
                                ("serial", so.serial, 36), ("vendor", so.vendor, 8)):
        if len(value) > limit or not _PARAM_RE.match(value):
            raise BackendError("create storage object", so.name, f"{field} {value!r} must be "
                               f"1..{limit} characters of A-Z a-z 0-9 . _ - for tgt")
    if "," in so.path:
        # tgt's parameter strings are comma-separated: the path is one of them.
        raise BackendError("create storage object", so.name, f"backing file {so.path} has "
                           "a ',' in its path, which tgt cannot take")
    if not Path(so.path).is_file():
        raise BackendError("create storage object", so.name, f"backing file {so.path} is "
                           "not a regular file", code="no_backing_file")
    return so
