"""FUSE adapter: maps mfusepy callbacks onto the configfs ``Tree`` under one lock.

Owns: stat results (configfs sizes and modes), per-open read snapshots, write-only/read-only
checks at open, and calling the fault table and mutation counters around each mutating call.
Must not: implement LIO semantics (``core``/``iscsi``/``lun``/``device`` do) or parse the
control protocol (``server``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import mfusepy

from .faults import Counters, Faults
from .nodes import Attr, Group, Link, Tree

log = logging.getLogger(__name__)
T = TypeVar("T")


class ConfigFS(mfusepy.Operations):
    use_ns = True

    def __init__(self, tree: Tree, mountpoint: str, lock: threading.RLock,
                 faults: Faults, counters: Counters,
                 on_init: Callable[[], None] | None = None) -> None:
        self.tree = tree
        self.mountpoint = os.path.abspath(mountpoint)
        self.mutex = lock
        self.faults = faults
        self.counters = counters
        self.on_init = on_init
        self.snapshots: dict[int, bytes] = {}
        self.next_fh = 1
        self.started = time.time_ns()

    def init(self, path: str) -> None:
        if self.on_init is not None:
            self.on_init()

    def _run(self, fn: Callable[[], T]) -> T:
        try:
            with self.mutex:
                return fn()
        except OSError as e:
            raise mfusepy.FuseOSError(e.errno or errno.EIO) from e

    def _mutate(self, op: str, path: str, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            code = self.faults.check(op, path)
            if code is not None:
                log.info("injected %s on %s %s", errno.errorcode.get(code, code), op, path)
                raise OSError(code, os.strerror(code))
            result = fn()
            self.counters.count(op, path)
            return result
        return self._run(guarded)

    def getattr(self, path: str, fi: Any = None) -> dict[str, Any]:
        node = self._run(lambda: self.tree.lookup(path))
        base = {"st_uid": 0, "st_gid": 0, "st_atime": self.started,
                "st_mtime": self.started, "st_ctime": self.started}
        if isinstance(node, Group):
            nlink = 2 + sum(isinstance(c, Group) for c in node.children.values())
            return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": nlink,
                    "st_size": 0}
        if isinstance(node, Link):
            text = self._run(lambda: self.tree.readlink(path))
            return {**base, "st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1,
                    "st_size": len(text)}
        assert isinstance(node, Attr)
        return {**base, "st_mode": stat.S_IFREG | node.mode, "st_nlink": 1, "st_size": 4096}

    def readdir(self, path: str, fi: Any) -> Iterator[str]:
        group = self._run(lambda: self.tree.group(path))
        with self.mutex:
            names = list(group.children)
        yield from [".", "..", *names]

    def readlink(self, path: str) -> str:
        return self._run(lambda: self.tree.readlink(path))

    def access(self, path: str, amode: int) -> int:
        self._run(lambda: self.tree.lookup(path))
        return 0

    def open(self, path: str, fi: Any) -> int:
        def do_open() -> int:
            node = self.tree.lookup(path)
            if not isinstance(node, Attr):
                raise OSError(errno.EISDIR, "not an attribute")
            accmode = fi.flags & os.O_ACCMODE
            if accmode in (os.O_RDONLY, os.O_RDWR) and node.show is None:
                raise OSError(errno.EACCES, "write-only attribute")
            if accmode in (os.O_WRONLY, os.O_RDWR) and node.store is None:
                raise OSError(errno.EACCES, "read-only attribute")
            fh = self.next_fh
            self.next_fh += 1
            fi.fh = fh
            fi.direct_io = 1
            return 0
        return self._run(do_open)

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        fh = _fh(fi)
        caller = _caller_pid()

        def do_read() -> bytes:
            data = self.snapshots.get(fh)
            if data is None or offset == 0:
                node = self.tree.lookup(path)
                if not isinstance(node, Attr) or node.show is None:
                    raise OSError(errno.EACCES, "not readable")
                if node.admin and not _has_sys_admin(caller):
                    raise OSError(errno.EPERM, "CAP_SYS_ADMIN required")
                data = node.show().encode()[:4096]
                self.snapshots[fh] = data
            return data[offset:offset + size]
        return self._run(do_read)

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        caller = _caller_pid()

        def do_write() -> int:
            node = self.tree.lookup(path)
            if not isinstance(node, Attr) or node.store is None:
                raise OSError(errno.EACCES, "not writable")
            if node.admin and not _has_sys_admin(caller):
                raise OSError(errno.EPERM, "CAP_SYS_ADMIN required")
            if len(data) > 4096:
                raise OSError(errno.EINVAL, "configfs attributes take at most a page")
            node.store(data.decode(errors="replace"))
            return len(data)
        return self._mutate("write", path, do_write)

    def truncate(self, path: str, length: int, fi: Any = None) -> int:
        # configfs ignores O_TRUNC / truncate on attributes
        self._run(lambda: self.tree.lookup(path))
        return 0

    def release(self, path: str, fi: Any) -> int:
        with self.mutex:
            self.snapshots.pop(_fh(fi), None)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._mutate("mkdir", path, lambda: self.tree.mkdir(path))
        return 0

    def rmdir(self, path: str) -> int:
        self._mutate("rmdir", path, lambda: self.tree.rmdir(path))
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._mutate("symlink", target,
                     lambda: self.tree.symlink(target, source, self.mountpoint))
        return 0

    def unlink(self, path: str) -> int:
        self._mutate("unlink", path, lambda: self.tree.unlink(path))
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def rename(self, old: str, new: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def chmod(self, path: str, mode: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


def _fh(fi: Any) -> int:
    """With ``raw_fi`` mfusepy hands over the fuse_file_info struct instead of the handle."""
    return fi if isinstance(fi, int) else int(fi.fh)


_CAP_SYS_ADMIN = 21


def _caller_pid() -> int:
    """The process whose system call this FUSE request is (0 when not inside one)."""
    try:
        return int(mfusepy.fuse_get_context()[2])
    except Exception:  # outside a FUSE request (direct calls in tests)
        return 0


def _has_sys_admin(pid: int) -> bool:
    """Whether ``pid`` has CAP_SYS_ADMIN in its effective set, as the kernel's capable()
    would ask. An unknown caller (pid 0, or gone) is given the benefit of the doubt."""
    if pid <= 0:
        return True
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except OSError:
        return True
    return True

