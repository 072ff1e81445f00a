"""Reading (and clearing) a LIO configfs tree for the realkernel tests; a script and a module.

Owns: the tree dump (every name under ``target/`` with its kind and the value a read gives,
or the errno a read gives), a LUN listing, the backend's own counters and sessions, and
clearing the kernel's target. Runs with the guest's python3 (any rtslib) and on the host
against the emulation. Prints one JSON object. Must not: change anything but in ``clear``.

    python3 lio_tree.py dump ROOT [--config]   # ROOT = .../config/target
    python3 lio_tree.py luns ROOT IQN
    python3 lio_tree.py backend IQN CACHE_DIR  # LioBackend.stats() and .sessions()
    python3 lio_tree.py clear ROOT
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

#: Parts of the tree that change with traffic or time, not with configuration.
VOLATILE = ("statistics", "fabric_statistics", "dynamic_sessions", "info")


def dump(root: str, config_only: bool = False) -> dict[str, Any]:
    """``relative path -> {"kind": dir|file|link, "mode", "value"|"error"|"link": ...}``."""
    out: dict[str, Any] = {}
    for here, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(here, root)
        if config_only and any(part in VOLATILE for part in rel_dir.split(os.sep)):
            dirs[:] = []
            continue
        dirs.sort()
        for name in list(dirs):
            path = os.path.join(here, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(path):  # os.walk lists symlinks to dirs as dirs
                dirs.remove(name)
                out[rel] = {"kind": "link", "link": os.readlink(path)}
            else:
                out[rel] = {"kind": "dir"}
        for name in sorted(files):
            path = os.path.join(here, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if config_only and name in VOLATILE:
                continue
            if os.path.islink(path):
                out[rel] = {"kind": "link", "link": os.readlink(path)}
                continue
            # The mode says what rtslib may write (it saves and restores writable ones).
            mode = oct(os.lstat(path).st_mode & 0o777)
            try:
                with open(path, "rb") as f:
                    out[rel] = {"kind": "file", "mode": mode,
                                "value": f.read().decode(errors="replace")}
            except OSError as exc:
                out[rel] = {"kind": "file", "mode": mode,
                            "error": errno.errorcode.get(exc.errno or 0, "?")}
    return out


def luns(root: str, iqn: str) -> dict[str, Any]:
    tpg = os.path.join(root, "iscsi", iqn, "tpgt_1")
    found: dict[str, Any] = {}
    base = os.path.join(tpg, "lun")
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        lun_dir = os.path.join(base, entry)
        links = [n for n in os.listdir(lun_dir) if os.path.islink(os.path.join(lun_dir, n))]
        if not links:
            continue
        so = os.path.realpath(os.path.join(lun_dir, links[0]))
        with open(os.path.join(so, "wwn", "vpd_unit_serial")) as f:
            serial = f.read().split(":")[-1].strip()
        with open(os.path.join(so, "udev_path")) as f:
            backing = f.read().strip()
        found[entry.split("_")[1]] = {"name": os.path.basename(so), "serial": serial,
                                      "file": backing}
    on = False
    if os.path.exists(os.path.join(tpg, "enable")):
        with open(os.path.join(tpg, "enable")) as f:
            on = f.read().strip() == "1"
    return {"luns": found, "tpg_enabled": on}


def backend(iqn: str, cache_dir: str) -> dict[str, Any]:
    from sbps.config import TargetConfig
    from sbps.target.lio.backend import LioBackend

    b = LioBackend(TargetConfig(saveconfig_path="/nonexistent/saveconfig.json"), cache_dir,
                   iqn)
    stats = {str(k): {"read_bytes": v.read_bytes, "commands": v.commands}
             for k, v in b.stats().items()}
    return {"stats": stats, "sessions": list(b.sessions())}


def clear(root: str) -> dict[str, Any]:
    """Remove every LIO object with rtslib, keeping the kernel's dbroot."""
    from rtslib_fb import RTSRoot

    from configfs.rtslib_compat import point_rtslib_at, restore_rtslib

    with open(os.path.join(root, "dbroot")) as f:
        dbroot = f.read().strip()
    saved = point_rtslib_at(root, dbroot)
    try:
        RTSRoot().clear_existing(confirm=True)
    finally:
        restore_rtslib(saved)
    return {"left": sorted(os.listdir(os.path.join(root, "core")))}


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "dump":
        result: dict[str, Any] = {"tree": dump(args[0], "--config" in args)}
    elif cmd == "luns":
        result = luns(args[0], args[1])
    elif cmd == "backend":
        result = backend(args[0], args[1])
    elif cmd == "clear":
        result = clear(args[0])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
