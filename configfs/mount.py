"""Mounting: run the FUSE loop in the foreground, or as a managed subprocess for tests.

Owns: the foreground entry point (mount, ready signal, SIGTERM/unmount handling) and the
``mounted()`` context manager that guarantees unmount and process cleanup. Must not: contain
any configfs semantics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .control import ControlClient

log = logging.getLogger(__name__)
READY = "CONFIGFS-READY"


def run_foreground(mountpoint: str, control: str | None = None, ready_fd: int | None = None,
                   debug: bool = False) -> int:
    """Mount at ``mountpoint`` and serve until unmounted or SIGTERM/SIGINT."""
    import mfusepy

    from .fusefs import ConfigFS
    from .server import ControlServer, Emulation

    emulation = Emulation()
    server = ControlServer(emulation, control) if control else None

    def on_init() -> None:
        if server is not None:
            server.start()
        if ready_fd is not None:
            os.write(ready_fd, (READY + "\n").encode())

    ops = ConfigFS(emulation.tree, mountpoint, emulation.lock, emulation.faults,
                   emulation.counters, on_init=on_init)
    # The main thread sits inside libfuse, where Python signal handlers never run: block the
    # signals everywhere and let one thread sigwait() for them, then unmount, which ends the loop.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    threading.Thread(target=_unmount_on_signal, args=(mountpoint, stop_signals),
                     name="configfs-signals", daemon=True).start()
    try:
        mfusepy.FUSE(ops, mountpoint, foreground=True, nothreads=False, raw_fi=True,
                     allow_other=True,
                     fsname="configfs", subtype="sbps", attr_timeout=0, entry_timeout=0,
                     negative_timeout=0, debug=debug)
    finally:
        if server is not None:
            server.close()
    return 0


def _unmount_on_signal(mountpoint: str, signals: set[signal.Signals]) -> None:
    signum = signal.sigwait(signals)
    log.info("signal %s: unmounting %s", signum, mountpoint)
    subprocess.run(["fusermount", "-u", "-z", mountpoint], capture_output=True, check=False)


@dataclass(frozen=True)
class Mounted:
    """A running emulation: ``root`` plays /sys/kernel/config, ``target`` its ``target/``."""

    root: str
    control_path: str
    pid: int

    @property
    def target(self) -> str:
        return os.path.join(self.root, "target")

    @property
    def control(self) -> ControlClient:
        return ControlClient(self.control_path)


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == real for line in mounts)


def unmount(path: str) -> None:
    """Lazy unmount; harmless when nothing is mounted."""
    for cmd in (["fusermount", "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, capture_output=True, check=False)


@contextlib.contextmanager
def mounted(mountpoint: str | None = None, start_timeout: float = 60.0) -> Iterator[Mounted]:
    """Mount the emulation in a child process; always unmount and reap it on exit."""
    workdir = tempfile.mkdtemp(prefix="configfs-")
    root = mountpoint or os.path.join(workdir, "config")
    os.makedirs(root, exist_ok=True)
    control = os.path.join(workdir, "control.sock")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "configfs", "mount", root, "--control", control,
         "--ready-fd", str(write_fd)],
        pass_fds=(write_fd,), cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        preexec_fn=_die_with_parent)
    os.close(write_fd)
    try:
        _wait_ready(read_fd, proc, start_timeout)
        yield Mounted(root=root, control_path=control, pid=proc.pid)
    finally:
        os.close(read_fd)
        unmount(root)
        _reap(proc)
        unmount(root)
        shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """If the test process is killed outright, the child gets SIGTERM and unmounts itself."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_ready(read_fd: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import select

    ready, _, _ = select.select([read_fd], [], [], timeout)
    line = os.read(read_fd, 64).decode() if ready else ""
    if READY not in line:
        raise RuntimeError(f"configfs emulation did not start (exit code {proc.poll()})")


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
