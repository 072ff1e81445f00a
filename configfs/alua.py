"""ALUA target port groups below a storage object: ``<so>/alua/<tg_pt_gp>/``.

Owns: the kernel-created ``default_tg_pt_gp``, user-created groups (mkdir), their attribute files
and the enum-as-text encoding rtslib parses. Must not: touch LUNs; a LUN's ``alua_tg_pt_gp`` file
(see ``lun.py``) only names one of these groups.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Protocol

from .attrs import line, parse_int, values_group
from .nodes import Group, fail

ACCESS_TYPES = ("None", "Implicit", "Explicit", "Implicit and Explicit")
ACCESS_STATUSES = ("None", "Altered by Explicit STPG", "Altered by Implicit ALUA")
ACCESS_STATES = (0, 1, 2, 3, 4, 14, 15)


class AluaOwner(Protocol):
    group: Group

    def alua_members(self, tg_pt_gp: str) -> list[str]: ...


def alua_groups(device_group: Group, owner: AluaOwner) -> Group:
    alua = device_group.group("alua", make=lambda parent, name: _tg_pt_gp(name, owner, None))
    default = _tg_pt_gp("default_tg_pt_gp", owner, 0)
    default.default = True
    alua.add(default)
    return alua


def _tg_pt_gp(name: str, owner: AluaOwner, ident: int | None) -> Group:
    group = Group(name)
    values: dict[str, int | str] = {
        "alua_access_state": 0, "alua_write_metadata": 0, "nonop_delay_msecs": 100,
        "trans_delay_msecs": 0, "implicit_trans_secs": 0, "preferred": 0,
        "alua_support_active_nonoptimized": 1, "alua_support_active_optimized": 1,
        "alua_support_offline": 1, "alua_support_standby": 1,
        "alua_support_transitioning": 1, "alua_support_unavailable": 1,
        "alua_support_lba_dependent": 0}
    # alua_support_lba_dependent is writable (0644) on kernel 6.1 too.
    values_group(group, values,
                 booleans=[k for k in values if k.startswith("alua_support")] +
                 ["alua_write_metadata", "preferred"], guard=_guard_state)
    state = {"type": 3, "status": 0, "id": ident}
    group.attr("alua_access_type", show=lambda: line(ACCESS_TYPES[state["type"] or 0]),
               store=_enum_store(state, "type", len(ACCESS_TYPES)))
    group.attr("alua_access_status", show=lambda: line(ACCESS_STATUSES[state["status"] or 0]),
               store=_enum_store(state, "status", len(ACCESS_STATUSES)))
    group.attr("tg_pt_gp_id", show=lambda: line("" if state["id"] is None else state["id"]),
               store=_id_store(state))
    # The kernel ends each member with a newline and a NUL (measured on 6.1).
    group.attr("members", show=lambda: "".join(m + "\n\0" for m in owner.alua_members(name)))
    return group


def _guard_state(name: str, value: int | str) -> None:
    if name == "alua_access_state" and value not in ACCESS_STATES:
        raise fail(errno.EINVAL, "bad ALUA access state")


def _enum_store(state: dict[str, int | None], key: str, size: int) -> Callable[[str], None]:
    def store(text: str) -> None:
        value = parse_int(text)
        if value >= size:
            raise fail(errno.EINVAL, f"bad value for {key}")
        state[key] = value
    return store


def _id_store(state: dict[str, int | None]) -> Callable[[str], None]:
    def store(text: str) -> None:
        value = parse_int(text)
        if value > 0xFFFF:
            raise fail(errno.EINVAL, "tg_pt_gp_id out of range")
        state["id"] = value
    return store
