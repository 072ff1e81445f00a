"""Probes of the security scenario, each reading the system from outside the daemon.

- ``ProcScan``: a thread reading every process's argv and environment (``/proc/<pid>/
  cmdline``, ``environ``) as fast as it can, for secrets (what ``ps e`` shows any user);
- ``loose_modes``: files that can hold a secret and are readable by group or others;
- ``raw_status``: one hand-written HTTP request (non-UTF-8 or oversized headers), its
  status or None when the server closed without answering.

Must not change what it inspects.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterable
from pathlib import Path


class ProcScan:
    """Collects ``secret name in argv/environ of pid (comm)`` while running."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets  # the caller adds rotated secrets before writing them
        self.found: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-scan", daemon=True)

    def __enter__(self) -> ProcScan:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        # New processes are read as soon as they appear (a tgtadm lives for milliseconds);
        # every process is read again every 50 sweeps (a secret put in an old one's
        # environment later is still found).
        me, seen = str(os.getpid()), set[str]()
        while not self._stop.is_set():
            if self.scans % 50 == 0:
                seen.clear()
            for pid in os.listdir("/proc"):
                if pid in seen or not pid.isdigit() or pid == me:
                    continue
                seen.add(pid)
                for what in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{pid}/{what}", "rb") as fh:
                            data = fh.read()
                    except OSError:
                        continue  # gone already
                    self._check(pid, what, data)
            self.scans += 1

    def _check(self, pid: str, what: str, data: bytes) -> None:
        for name, value in list(self.secrets.items()):
            if value and value.encode() in data:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                self.found.add(f"{name} in the {what} of pid {pid} ({comm})")


def loose_modes(paths: Iterable[Path], secrets: Iterable[str],
                names: tuple[str, ...] = ("saveconfig", "admin-token")) -> list[str]:
    """Regular files that hold a secret (by name or content) with any group/other bit."""
    values = [s.encode() for s in secrets if s]
    out = []
    for path in paths:
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            holds = path.name.startswith(names) or any(v in path.read_bytes() for v in values)
        except OSError:
            continue
        if holds and st.st_mode & 0o077:
            out.append(f"{path} is {stat.S_IMODE(st.st_mode):04o}")
    return out


def raw_status(port: int, request: bytes, timeout: float = 10) -> int | None:
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.sendall(request)
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass  # reset while sending an oversized header: refused, not answered
    if not data.startswith(b"HTTP/"):
        return None
    return int(data.split()[1])
