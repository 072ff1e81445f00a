"""rtslib-fb plumbing for the LIO backend: pointing rtslib at a configfs root, error
translation, and the small configfs file helpers the readers share.

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
import os
from collections.abc import Iterator
from typing import Any

from sbps.core.errors import BackendError

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
        self.path: str = os.path.join(parent.path, path) if parent else path

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

    def numbered(self, prefix: str) -> Iterator[tuple[int, Dir]]:
        """``(n, open directory)`` for each ``<prefix><n>`` here (``lun_3``), open while
        the caller is at it; one removed meanwhile is skipped."""
        for entry in self.names():
            number = entry[len(prefix):]
            if not entry.startswith(prefix) or not number.isdigit():
                continue
            sub = Dir.at(entry, self)
            if sub is None:
                continue
            with sub:
                yield int(number), sub

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
