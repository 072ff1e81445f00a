"""One qemu compute node of the boot lane: the Debian kernel, the sbps initramfs, no disk.

Owns the qemu process (software emulation, user networking without ``restrict``: the
guest reaches the host's loopback servers as 10.0.2.2, the same port), its serial console
file and its end: the node's init powers off, so ``run()`` waits for qemu to exit and kills
it by pid at the deadline. Also the baseline: the same kernel booting the same root from a
local virtio disk. Must not: give the node a disk in the sbps boot.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.boot.build import NodeImage

HOST = "10.0.2.2"
MARKER = "SBPS-DEMO-ROOT-OK"
_MARK_RE = re.compile(r"sbps-mark: (\S+) t=([0-9.]+)")
_WWID_RE = re.compile(r"SBPS-DEMO-WWID: \S+ (\S+)")


@dataclass
class Boot:
    console: str
    seconds: float
    rc: int | None

    @property
    def booted(self) -> bool:
        return MARKER in self.console

    @property
    def wwids(self) -> list[str]:
        """The root's WWID as the booted image's init printed it (sysfs: naa.<hex>)."""
        return ["3" + w.removeprefix("naa.") for w in _WWID_RE.findall(self.console)]

    @property
    def marks(self) -> dict[str, float]:
        """Console timestamps (seconds since the kernel started) of each boot step."""
        return {name: float(t) for name, t in _MARK_RE.findall(self.console)}

    @property
    def emergency(self) -> bool:
        return "sbps-emergency" in self.console


def command(image: NodeImage, cmdline: str, console: Path, pidfile: Path,
            disk: Path | None = None) -> list[str]:
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512", "-nodefaults",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{console}", "-pidfile", str(pidfile),
            "-kernel", str(image.kernel), "-append", cmdline]
    if disk is None:
        argv += ["-initrd", str(image.initrd), "-nic", "user,model=e1000"]
    else:
        argv += ["-drive", f"file={disk},format=raw,if=virtio,readonly=on"]
    return argv


def run(image: NodeImage, cmdline: str, workdir: Path, *, timeout: float = 240,
        disk: Path | None = None, name: str = "node") -> Boot:
    """Boot once and wait until the node powers off (or ``timeout``: killed by pid)."""
    console, pidfile = workdir / f"{name}.console", workdir / f"{name}.pid"
    started = time.monotonic()
    with open(workdir / f"{name}.qemu.log", "wb") as log:
        proc = subprocess.Popen(command(image, cmdline, console, pidfile, disk),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        rc: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        proc.kill()
        proc.wait(10)
    text = console.read_text(errors="replace") if console.exists() else ""
    return Boot(text, time.monotonic() - started, rc)
