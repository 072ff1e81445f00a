"""Pointing rtslib-fb (2.1.x and 2.2.x) at a configfs root other than /sys/kernel/config.

Owns: ``point_rtslib_at`` (the reference for what the production backend must do, with no
test-only branches) and ``rtslib_root`` (a test helper that also restores rtslib afterwards).
Must not: import rtslib at module import time (the package must import without it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def point_rtslib_at(target_dir: str, dbroot: str | None = None) -> dict[str, Any]:
    """Make every rtslib object live under ``target_dir`` (the LIO ``.../config/target``).

    ``target_dir`` is what sbps calls ``target.configfs_root`` (default
    ``/sys/kernel/config/target``); on the emulation it is ``<mount>/target``.

    rtslib's ``RTSRoot()`` (which rtslib itself constructs internally, e.g. while creating a
    storage object) calls ``mount_configfs()`` (hardcoded /sys/kernel/config) and may call
    ``modprobe()``; both are replaced by a check that the tree exists, which holds on a real
    kernel with target_core_mod loaded and on the emulation alike. Returns the previous values
    so that a caller can restore them.
    """
    from rtslib_fb import fabric, node, root
    from rtslib_fb.utils import RTSLibError

    def require_configfs() -> None:
        if not os.path.isdir(target_dir):
            raise RTSLibError(f"{target_dir} missing: configfs/target_core_mod not available")

    def refuse_modprobe(module: str) -> None:
        raise RTSLibError(f"kernel module {module} is not loaded (sbps never loads modules)")

    saved = {"configfs_dir": node.CFSNode.configfs_dir,
             "mount_configfs": root.mount_configfs, "root.modprobe": root.modprobe,
             "fabric.modprobe": fabric.modprobe,
             "preferred_dbroot": root.RTSRoot._preferred_dbroot}
    node.CFSNode.configfs_dir = target_dir
    root.mount_configfs = require_configfs
    root.modprobe = refuse_modprobe
    fabric.modprobe = refuse_modprobe
    if dbroot is not None:
        root.RTSRoot._preferred_dbroot = dbroot
    return saved


def restore_rtslib(saved: dict[str, Any]) -> None:
    from rtslib_fb import fabric, node, root, tcm

    node.CFSNode.configfs_dir = saved["configfs_dir"]
    root.mount_configfs = saved["mount_configfs"]
    root.modprobe = saved["root.modprobe"]
    fabric.modprobe = saved["fabric.modprobe"]
    root.RTSRoot._preferred_dbroot = saved["preferred_dbroot"]
    tcm.bs_cache.clear()


@contextlib.contextmanager
def rtslib_root(mount_dir: str, dbroot: str | None = None) -> Iterator[Any]:
    """Test helper: yield an ``RTSRoot`` on the emulation mounted at ``mount_dir``.

    ``dbroot`` defaults to a directory next to the mount, so rtslib's write of its preferred
    dbroot (/etc/target, which may not exist) succeeds. rtslib's module-global backstore index
    cache is cleared on entry and exit, since it outlives a mount.
    """
    from rtslib_fb import RTSRoot, tcm

    if dbroot is None:
        dbroot = os.path.join(os.path.dirname(os.path.abspath(mount_dir)), "dbroot")
        os.makedirs(dbroot, exist_ok=True)
    tcm.bs_cache.clear()
    saved = point_rtslib_at(os.path.join(mount_dir, "target"), dbroot)
    try:
        yield RTSRoot()
    finally:
        restore_rtslib(saved)


