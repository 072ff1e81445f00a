"""A stand-in for the emulation's side channel on a real kernel, in the scenario process.

A real configfs has no write counter and no fault injection, so this counts and fails the
process's own mutating calls on the configfs tree through a Python audit hook
(``sys.addaudithook``): ``open`` for writing, ``os.mkdir``, ``os.rmdir``, ``os.symlink`` and
``os.remove``. It offers the subset of ``configfs.control.ControlClient`` the LIO scenarios
use (``reset_counters``, ``writes``, ``counters``, ``inject``, ``clear_faults``). An injected
fault raises the errno before the kernel sees the call, as a failing kernel would answer it.
Calls are counted when attempted (the emulation counts successful ones); a converged pass must
attempt none, so the zero-writes checks mean the same. Audit hooks cannot be removed, so one
instance per process and per configfs root. Must not: be used on the emulation.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
import threading
from dataclasses import dataclass
from typing import Any

_EVENTS = {"open": "write", "os.mkdir": "mkdir", "os.rmdir": "rmdir", "os.symlink": "symlink",
           "os.remove": "unlink"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass
class _Fault:
    ident: int
    path: str
    error: int
    ops: frozenset[str] | None
    prefix: bool
    once: bool


def _path(value: Any) -> str | None:
    if isinstance(value, int):
        return None  # a file descriptor
    try:
        raw = os.fspath(value)
    except TypeError:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return os.path.abspath(text)


class AuditControl:
    def __init__(self, configfs_root: str) -> None:
        # The emulation's paths are "<mount>/target/..."; the kernel's "/sys/kernel/config/...".
        self.root = os.path.abspath(configfs_root).rstrip("/") + "/"
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.faults: list[_Fault] = []
        self.next_id = 1
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        op = _EVENTS.get(event)
        if op is None:
            return
        if op == "write":
            mode, flags = args[1], args[2]
            if not (isinstance(mode, str) and any(c in mode for c in "wax+")) and not (
                    isinstance(flags, int) and flags & _WRITE_FLAGS):
                return
        path = _path(args[1] if op == "symlink" else args[0])
        if path is None or not (path + "/").startswith(self.root):
            return
        if op == "write" and stat.S_ISDIR(_mode(path)):
            return
        with self.lock:
            fault = next((f for f in self.faults if (f.ops is None or op in f.ops) and (
                path == f.path or (f.prefix and path.startswith(f.path + "/")))), None)
            if fault is not None and fault.once:
                self.faults.remove(fault)
            if fault is None:
                self.log.append((op, path))
        if fault is not None:
            raise OSError(fault.error, os.strerror(fault.error), path)

    # the ControlClient subset -------------------------------------------------------------

    def reset_counters(self) -> None:
        with self.lock:
            self.log.clear()

    def writes(self) -> int:
        with self.lock:
            return len(self.log)

    def counters(self) -> dict[str, Any]:
        with self.lock:
            by_op: dict[str, int] = {}
            for op, _ in self.log:
                by_op[op] = by_op.get(op, 0) + 1
            return {"total": len(self.log), "by_op": by_op,
                    "log": [f"{op} {path}" for op, path in self.log]}

    def inject(self, path: str, error: str | int = "EIO", ops: list[str] | None = None,
               prefix: bool = False, once: bool = True) -> int:
        code = error if isinstance(error, int) else int(getattr(errno, error))
        with self.lock:
            ident = self.next_id
            self.next_id += 1
            self.faults.append(_Fault(ident, os.path.abspath(path), code,
                                      frozenset(ops) if ops else None, prefix, once))
        return ident

    def clear_faults(self, ident: int | None = None) -> None:
        with self.lock:
            self.faults = [f for f in self.faults if ident is not None and f.ident != ident]


def _mode(path: str) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


@functools.cache
def audit_control(configfs_root: str) -> AuditControl:
    """The process's one AuditControl for ``configfs_root``."""
    return AuditControl(configfs_root)
