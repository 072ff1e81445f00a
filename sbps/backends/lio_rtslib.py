"""rtslib-fb plumbing for the LIO backend: pointing rtslib at a configfs root, error
translation, the atomic ``saveconfig.json`` writer, and the small configfs file helpers the
readers share.

Owns the process-wide rtslib settings (rtslib keeps them in module globals and class
attributes, and builds ``RTSRoot()`` internally, so they cannot be scoped to one object):
its configfs directory, its configfs mount and module probing (replaced by checks, since sbps
never mounts filesystems or loads kernel modules), and its preferred dbroot (set to the
value the kernel already has, so rtslib never writes ``dbroot``). Works with rtslib-fb 2.1.x
(Debian) and 2.2.x (PyPI). Must not import sbps beyond ``errors``; must not do anything at
import time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from typing import Any

from sbps.errors import BackendError

# errnos worth retrying: the kernel (or a disk) may answer differently next time.
_TEMPORARY_ERRNOS = frozenset({errno.EIO, errno.EBUSY, errno.EAGAIN, errno.EINTR,
                               errno.ETIMEDOUT, errno.ENOMEM, errno.ENOSPC})


def point_rtslib_at(configfs_root: str) -> None:
    """Make every rtslib object live under ``configfs_root`` (LIO's ``.../config/target``).

    Raises BackendError when the tree is missing (configfs not mounted or target_core_mod not
    loaded: the system's target.service is responsible for both).
    """
    from rtslib_fb import fabric, node, root
    from rtslib_fb.utils import RTSLibError

    if not os.path.isdir(configfs_root):
        raise BackendError("open", configfs_root, "LIO configfs tree missing: configfs "
                           "not mounted or target_core_mod not loaded", temporary=True)

    def require_configfs() -> None:
        if not os.path.isdir(configfs_root):
            raise RTSLibError(f"{configfs_root} missing: configfs or target_core_mod "
                              "not available")

    def refuse_modprobe(module: str) -> None:
        raise RTSLibError(f"kernel module {module} is not loaded (sbps never loads modules)")

    node.CFSNode.configfs_dir = configfs_root
    root.mount_configfs = require_configfs
    root.modprobe = refuse_modprobe
    fabric.modprobe = refuse_modprobe
    # Keep whatever dbroot the system set (target.service sets it before any device exists;
    # the kernel refuses a change afterwards): rtslib then never writes it.
    try:
        with open(os.path.join(configfs_root, "dbroot")) as f:
            current = f.read().strip()
    except OSError:
        current = ""
    if current:
        root.RTSRoot._preferred_dbroot = current
    forget_backstore_indexes()


def forget_backstore_indexes() -> None:
    """rtslib caches backstore name -> HBA index in a module global; anything else changing
    the tree (targetcli, a restore, another process) makes it stale, so drop it per call."""
    from rtslib_fb import tcm

    tcm.bs_cache.clear()


def rtslib_root() -> Any:
    from rtslib_fb import RTSRoot

    return RTSRoot()


def _errno_of(exc: BaseException) -> int | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur.errno
        cur = cur.__cause__ or cur.__context__
    return None


@contextlib.contextmanager
def translated(operation: str, obj: str) -> Iterator[None]:
    """Turn rtslib and filesystem errors into BackendError naming the operation and object."""
    from rtslib_fb.utils import RTSLibError

    try:
        yield
    except BackendError:
        raise
    except (RTSLibError, OSError) as exc:
        code = _errno_of(exc)
        reason = str(exc) or type(exc).__name__
        if code is not None and os.strerror(code) not in reason:
            reason = f"{reason} ({os.strerror(code)})"
        raise BackendError(operation, obj, reason,
                           temporary=code in _TEMPORARY_ERRNOS) from exc


def dump_config(root: Any) -> tuple[dict[str, Any], list[str]]:
    """rtslib's dump of the whole configuration, as ``targetcli saveconfig`` writes it.

    ``RTSRoot.dump()`` fails as a whole on one half-made object (a storage object never
    enabled, a LUN without its link: what a process killed mid-create leaves). Then the dump
    is rebuilt item by item from rtslib's own per-object dumps, leaving out only what cannot
    be dumped (and could not be restored either); returns those items' names too.
    """
    from rtslib_fb.node import CFSNode
    from rtslib_fb.utils import RTSLibError

    try:
        return root.dump(), []
    except (RTSLibError, OSError):
        pass
    skipped: list[str] = []

    def each(items: Any, label: Any) -> list[dict[str, Any]]:
        out = []
        for item in items:
            try:
                out.append(item.dump())
            except (RTSLibError, OSError):
                skipped.append(label(item))
        return out

    config: dict[str, Any] = CFSNode.dump(root)
    config["storage_objects"] = each(root.storage_objects, lambda so: f"{so.plugin}/{so.name}")
    config["targets"] = []
    for target in root.targets:
        try:
            config["targets"].append(target.dump())
            continue
        except (RTSLibError, OSError):
            pass
        tpgs = []
        for tpg in target.tpgs:
            try:
                tpgs.append(tpg.dump())
                continue
            except (RTSLibError, OSError):
                pass
            where = f"{target.wwn}/tpg{tpg.tag}"
            d = CFSNode.dump(tpg)
            d.update(tag=tpg.tag, enable=tpg.enable,
                     luns=each(tpg.luns, lambda lun, w=where: f"{w}/lun{lun.lun}"),
                     portals=each(tpg.network_portals, lambda np: str(np)),
                     node_acls=each(tpg.node_acls, lambda acl: str(acl)))
            tpgs.append(d)
        config["targets"].append({**CFSNode.dump(target), "wwn": target.wwn,
                                  "fabric": target.fabric_module.name, "tpgs": tpgs})
    config["fabric_modules"] = [f.dump() for f in root.fabric_modules
                                if f.has_feature("discovery_auth") and f.discovery_enable_auth]
    return config, skipped


def save_atomically(config: dict[str, Any], path: str) -> None:
    """Write ``config`` as ``path``: temp file, fsync, previous file kept as ``.bak``, rename,
    directory fsync. A crash at any point leaves either the old or the new file in place."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.sbps-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, sort_keys=True, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
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


def read_text(path: str) -> str:
    """A configfs attribute's value, without the trailing newline; '' when absent."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def write_text(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(f"{value}\n")


def listdir(path: str) -> list[str]:
    """Sorted names in a configfs directory; none when it is absent."""
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


class Dir:
    """An open configfs directory. Names below it are looked up from it rather than from
    ``/``: each path component is a lookup (through FUSE, a round trip), so reading a few
    files of one object costs a few calls instead of a few dozen."""

    def __init__(self, path: str, parent: Dir | None = None) -> None:
        flags = os.O_RDONLY | os.O_DIRECTORY
        self.fd: int = os.open(path, flags, dir_fd=parent.fd if parent else None)

    @classmethod
    def at(cls, path: str, parent: Dir | None = None) -> Dir | None:
        """The directory, or None when it does not exist."""
        try:
            return cls(path, parent)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def read(self, name: str) -> str | None:
        """An attribute's value without the trailing newline; None when absent."""
        try:
            fd = os.open(name, os.O_RDONLY, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode(errors="replace").strip()

    def link(self, skip: frozenset[str]) -> str | None:
        """The target of the one symlink here (a LUN or a mapped LUN), found by trying
        ``readlink`` on the entries that are not known attributes: one call per entry
        instead of an ``lstat`` of each."""
        for entry in self.names():
            if entry in skip:
                continue
            try:
                return os.readlink(entry, dir_fd=self.fd)
            except OSError:  # not a link (an attribute a newer kernel added), or just removed
                continue
        return None
