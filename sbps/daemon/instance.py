"""One marshal per state directory: the lock file ``<reconcile.state_dir>/marshal.lock``.

Owns taking the lock (``flock``, exclusive, never waiting) and recording the holder's pid in
the file (mode 0600) for the message a second instance prints. The kernel drops the lock
when the holder exits however it exits, so a stale file never blocks a restart. Must not
touch anything else in the state directory: a second instance is refused before it builds
any component (no port bound, no pass, no DNS, no backend).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sbps.core.errors import PermanentError

LOCK_NAME = "marshal.lock"


class AlreadyRunning(PermanentError):
    """Another process holds the lock: ``pid`` (0 when it has not written it yet)."""

    code = "already_running"

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(f"another instance (pid {pid or 'unknown'}) holds {path}")
        self.path = path
        self.pid = pid


class InstanceLock:
    """The lock of one state directory; held from ``acquire`` until ``release`` or exit."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning; OSError when the directory is unusable.
        The descriptor is not inherited by child processes (PEP 446)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _pid_in(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0
