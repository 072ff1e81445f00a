"""Bytes read per tgt LUN, as the kernel counts them for the LUN's own I/O threads.

tgt counts reads per LUN *and session* and drops a session's row when it logs out, so a
session that logs in, reads and logs out between two readings (a node that copies its
image, the demo's read-back) never shows in ``tgtadm --op stat``. tgt's ``rdwr`` backing
store serves each LUN with a pool of threads of its own (``bs_thread_open``, 16 by
default), started by ``--op new --mode logicalunit`` and ended by ``--op delete``; every
byte of the LUN is read with ``pread`` by one of them, and the kernel counts those bytes
per thread (``rchar`` in ``/proc/<tgtd>/task/<tid>/io``) whatever the sessions do.

Owns that mapping: which threads belong to which LUN (the threads that appeared while this
backend created the LUN), kept in a small file in the state directory so a restart of the
marshal keeps it, valid while the same tgtd process runs (its pid and start time are in the
file). ``read_bytes()`` gives the sum for every LUN it knows; a LUN it does not know (made
by someone else, or before a tgtd restart it did not see) is left to the session counters.
Finds tgtd as the process holding the POSIX lock on its management socket's lock file
(``/proc/locks``). Reading another process's thread counters needs CAP_SYS_PTRACE when that
process has capabilities the reader lacks (tgtd runs with all of root's): the shipped unit
does not grant it (``systemd/sbps-marshal-tgt.conf`` is the drop-in for tgt hosts); without
it this says so once and the session counters are used. Must not write anything but its
own file; never signals tgtd.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sbps.core import decode
from sbps.core.errors import SbpsError

log = logging.getLogger(__name__)

SOCKET_PREFIX = "/var/run/tgtd/socket"


class IoThreads:
    def __init__(self, control_port: int, state_file: Path | None, *,
                 proc: Path = Path("/proc"), socket_prefix: str = SOCKET_PREFIX) -> None:
        self.lock_file = Path(f"{socket_prefix}.{control_port}.lock")
        self.state_file = state_file
        self.proc = proc
        self._owner: tuple[int, int] | None = None  # (pid, start time) of the mapping
        self._luns: dict[int, frozenset[int]] = {}
        self._loaded = False
        self._denied = False

    # Which tgtd -------------------------------------------------------------------------

    def tgtd(self) -> tuple[int, int] | None:
        """(pid, start time) of the tgtd behind the control port, or None."""
        try:
            st = self.lock_file.stat()
            locks = (self.proc / "locks").read_text()
        except OSError:
            return None
        want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in locks.splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "POSIX" and parts[5] == want:
                with contextlib.suppress(ValueError):
                    pid = int(parts[4])
                    start = self._start_time(pid)
                    return (pid, start) if start is not None else None
        return None

    def _start_time(self, pid: int) -> int | None:
        try:
            stat = (self.proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        return int(stat.rsplit(")", 1)[1].split()[19])

    def tasks(self, owner: tuple[int, int] | None = None) -> frozenset[int]:
        owner = owner or self.tgtd()
        if owner is None:
            return frozenset()
        try:
            return frozenset(int(t) for t in os.listdir(self.proc / str(owner[0]) / "task"))
        except OSError:
            return frozenset()

    # The mapping --------------------------------------------------------------------------

    @contextlib.contextmanager
    def creating(self, index: int) -> Iterator[None]:
        """Around the request that creates LUN ``index``: its threads are the new ones."""
        owner = self.tgtd()
        before = self.tasks(owner)
        yield
        if owner is None or self.tgtd() != owner:
            return
        self._load(owner)
        taken = frozenset().union(*self._luns.values()) if self._luns else frozenset()
        new = self.tasks(owner) - before - taken
        if new:
            self._luns[index] = new
            self._save()

    def forget(self, index: int) -> None:
        if self._luns.pop(index, None) is not None:
            self._save()

    def read_bytes(self) -> dict[int, int]:
        """LUN index -> bytes its threads have read, for every LUN whose threads are known
        and still alive (all of them: a partial set means the LUN is not what we made)."""
        owner = self.tgtd()
        if owner is None:
            return {}
        self._load(owner)
        out: dict[int, int] = {}
        for index, tids in self._luns.items():
            total = 0
            for tid in tids:
                value = self._rchar(owner[0], tid)
                if value is None:
                    break
                total += value
            else:
                out[index] = total
        return out

    def _rchar(self, pid: int, tid: int) -> int | None:
        try:
            text = (self.proc / str(pid) / "task" / str(tid) / "io").read_text()
        except PermissionError:
            if not self._denied:
                self._denied = True
                log.warning("cannot read tgtd's per-thread I/O counters (CAP_SYS_PTRACE is "
                            "not in the unit's capability bounding set; see docs/tgt.md): "
                            "bytes read in sessions that end between two readings of the "
                            "counters are not counted")
            return None
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        return None

    # The file -----------------------------------------------------------------------------

    def _load(self, owner: tuple[int, int]) -> None:
        if self._loaded and self._owner == owner:
            return
        self._owner, self._luns, self._loaded = owner, {}, True
        if self.state_file is None:
            return
        try:
            doc = decode.loads(self.state_file.read_bytes(), "state", str(self.state_file),
                               max_bytes=1 << 20, expect=dict)
            if [doc["pid"], doc["start"]] == list(owner):
                self._luns = {int(k): frozenset(int(t) for t in v)
                              for k, v in doc["luns"].items()}
        except FileNotFoundError:
            pass
        except (OSError, SbpsError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring %s (tgt I/O thread map): %s", self.state_file, exc)

    def _save(self) -> None:
        if self.state_file is None or self._owner is None:
            return
        doc = {"pid": self._owner[0], "start": self._owner[1],
               "luns": {str(k): sorted(v) for k, v in sorted(self._luns.items())}}
        try:
            fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".tgt-iothreads.")
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("cannot write %s (tgt I/O thread map): %s", self.state_file, exc)
