"""``saveconfig.json`` for target.service: rtslib's dump of the whole LIO configuration,
written atomically, with the per-object dumps reused between saves.

rtslib dumps an object by reading every one of its attributes (a storage object has about
forty, each found by a directory walk), so dumping a few hundred LUNs anew for every
change made each label change on a large target cost seconds. ``SavedConfig`` keeps the
dumps of storage objects and of this worker's LUNs and node ACLs, and dumps one again when
sbps changed it (``forget``), when someone else wrote the file since sbps last did
(targetcli saves after each change an admin makes), and, a few per save, when its dump is
older than ``max_age`` (a change made live and saved by no one reaches the file that way).
Everything else (the TPG's own settings, portals, other targets) is dumped at every save.
The file is the same as a full dump would give: a test compares them.

Must not: change the live configuration, or write anything when the dump fails as a whole.
Blocking; runs on the backend thread. Imports rtslib only inside functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sbps.core.actions import ObjectType, TargetObject
from sbps.target.lio.plumbing import listdir
from sbps.target.lio.tree import PLUGINS, lun_indexes

#: How the dumps of each type of object are keyed (with their name in configfs).
_KINDS = {ObjectType.STORAGE_OBJECT: "so", ObjectType.LUN: "lun", ObjectType.ACL: "acl"}
#: Dumps older than ``max_age`` read anew per save, at most (the rest wait for later saves).
REFRESH_PER_SAVE = 16


class SavedConfig:
    def __init__(self, path: str, iqn: str, *, max_age: float,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.iqn = iqn
        self.max_age = max_age
        self.clock = clock
        self._dumps: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._written: str | None = None
        self._refresh = REFRESH_PER_SAVE

    def forget(self, obj: TargetObject) -> None:
        """sbps changed a storage object, a LUN of this worker's TPG or one of its node
        ACLs: its next dump is read anew."""
        kind, name = _KINDS[obj.type], obj.name
        for key in [k for k in self._dumps if k[0] == kind and k[1].rpartition("/")[2] == name]:
            del self._dumps[key]

    def save(self, root: Any, configfs_root: str) -> list[str]:
        """Dump and write; returns what was left out (half-made objects, which neither
        dump nor restore)."""
        if self._written != _digest(self.path):
            self._dumps.clear()  # someone else saved: nothing read before counts
        config, skipped = self._dump(root, configfs_root)
        self._written = save_atomically(config, self.path)
        return skipped

    # Dumping --------------------------------------------------------------------------------

    def _cached(self, kind: str, key: str, now: float, skipped: list[str], label: str,
                dump: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any] | None:
        from rtslib_fb.utils import RTSLibError

        hit = self._dumps.get((kind, key))
        if hit is not None and (0 <= now - hit[0] < self.max_age or self._refresh <= 0):
            return hit[1]
        if hit is not None:
            self._refresh -= 1
        try:
            value = dump(*args)
        except (RTSLibError, OSError):
            skipped.append(label)
            self._dumps.pop((kind, key), None)
            return None
        self._dumps[(kind, key)] = (now, value)
        return value

    def _dump(self, root: Any, configfs: str) -> tuple[dict[str, Any], list[str]]:
        from rtslib_fb.node import CFSNode

        now = self.clock()
        self._refresh = REFRESH_PER_SAVE
        skipped: list[str] = []
        seen: set[tuple[str, str]] = set()
        config: dict[str, Any] = CFSNode.dump(root)
        stores = []
        core = os.path.join(configfs, "core")
        for hba in listdir(core):
            plugin = PLUGINS.get(hba.rpartition("_")[0])
            for name in listdir(os.path.join(core, hba)) if plugin else ():
                if name in ("hba_info", "hba_mode"):
                    continue
                key = f"{hba}/{name}"
                seen.add(("so", key))
                path = os.path.join(core, key)
                d = self._cached("so", key, now, skipped, f"{plugin}/{name}", _so_dump,
                                 path)
                if d is not None:
                    stores.append(d)
        config["storage_objects"] = stores
        config["targets"] = []
        for target in root.targets:
            if target.fabric_module.name == "iscsi" and target.wwn == self.iqn:
                config["targets"].append(self._our_target(target, now, skipped, seen))
            else:
                config["targets"].append(_dump_target(target, skipped))
        config["fabric_modules"] = [f.dump() for f in root.fabric_modules
                                    if f.has_feature("discovery_auth")
                                    and f.discovery_enable_auth]
        for gone in set(self._dumps) - seen:
            del self._dumps[gone]
        return config, skipped

    def _our_target(self, target: Any, now: float, skipped: list[str],
                    seen: set[tuple[str, str]]) -> dict[str, Any]:
        from rtslib_fb.node import CFSNode

        tpgs = []
        for tpg in target.tpgs:
            d = _tpg_settings(tpg)
            where = f"{target.wwn}/tpg{tpg.tag}"
            parts: dict[str, tuple[str, str, Sequence[Any], Callable[..., dict[str, Any]]]]
            parts = {"luns": ("lun", "lun", lun_indexes(tpg.path), _lun_dump),
                     "node_acls": ("acl", "acls/", listdir(os.path.join(tpg.path, "acls")),
                                   _acl_dump)}
            for field, (kind, label, names, dump) in parts.items():
                d[field] = []
                for name in names:
                    key = f"tpg{tpg.tag}/{name}"
                    seen.add((kind, key))
                    item = self._cached(kind, key, now, skipped, f"{where}/{label}{name}",
                                        dump, tpg, name)
                    if item is not None:
                        d[field].append(item)
            tpgs.append(d)
        return {**CFSNode.dump(target), "wwn": target.wwn, "fabric": target.fabric_module.name,
                "tpgs": tpgs}


def _so_dump(path: str) -> dict[str, Any]:
    from rtslib_fb.tcm import StorageObject

    return StorageObject.so_from_path(path).dump()


def _lun_dump(tpg: Any, index: int) -> dict[str, Any]:
    from rtslib_fb import LUN

    return LUN(tpg, index).dump()


def _acl_dump(tpg: Any, initiator: str) -> dict[str, Any]:
    from rtslib_fb import NodeACL

    return NodeACL(tpg, initiator, "lookup").dump()


def _tpg_settings(tpg: Any) -> dict[str, Any]:
    """What ``TPG.dump()`` gives besides LUNs and ACLs."""
    from rtslib_fb.node import CFSNode
    from rtslib_fb.target import auth_params

    d = CFSNode.dump(tpg)
    d.update(tag=tpg.tag, enable=tpg.enable,
             portals=[np.dump() for np in tpg.network_portals])
    if tpg.has_feature("auth"):
        for attr in auth_params:
            value = getattr(tpg, "chap_" + attr, None)
            if value:
                d["chap_" + attr] = value
    return d


def _dump_target(target: Any, skipped: list[str]) -> dict[str, Any]:
    """Another target, whole; a TPG that does not dump (a half-made LUN) item by item."""
    from rtslib_fb.node import CFSNode
    from rtslib_fb.utils import RTSLibError

    def each(items: Any, label: Callable[[Any], str]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            try:
                out.append(item.dump())
            except (RTSLibError, OSError):
                skipped.append(label(item))
        return out

    tpgs = []
    for tpg in target.tpgs:
        try:
            tpgs.append(tpg.dump())
            continue
        except (RTSLibError, OSError):
            pass
        where = f"{target.wwn}/tpg{tpg.tag}"
        d = _tpg_settings(tpg)
        d.update(luns=each(tpg.luns, partial(_lun_label, where)),
                 node_acls=each(tpg.node_acls, str))
        tpgs.append(d)
    return {**CFSNode.dump(target), "wwn": target.wwn, "fabric": target.fabric_module.name,
            "tpgs": tpgs}


def _lun_label(where: str, lun: Any) -> str:
    return f"{where}/lun{lun.lun}"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def save_atomically(config: dict[str, Any], path: str) -> str:
    """Write ``config`` as ``path``: temp file, fsync, previous file kept as ``.bak``, rename,
    directory fsync. A crash at any point leaves either the old or the new file in place.
    The file, its ``.bak`` and the temp file are mode 0600 (CHAP secrets). Returns the
    SHA-256 of what was written."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    body = (json.dumps(config, sort_keys=True, indent=2) + "\n").encode()
    tmp = f"{path}.sbps-tmp"
    # The file holds CHAP secrets: 0600 whatever was there. A stale temp file (another
    # mode, another owner, a symlink) is removed, never reused: O_EXCL makes a new inode.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            # The .bak is a hard link to the previous file: tighten that inode first.
            os.chmod(path, 0o600)
            backup = f"{path}.bak"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)
            os.link(path, backup)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return hashlib.sha256(body).hexdigest()
