"""Booting the test guest under qemu (software emulation) and talking to its command agent.

Owns the qemu process (started with ``-pidfile``, stopped by that pid), its network (user
mode, ``restrict=on``, every host forward bound to 127.0.0.1: the iSCSI portal and the agent;
guest forwards to host servers through ``relay.py``), the 9p shares (the worktree read-only
at ``/src``, a host folder read-write at ``/out``) and the client end of the command channel.
Must not: follow any address the guest reports (discovery answers with 10.0.2.15); tests
reach the target only through ``iscsi_portal``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.vm.build import REPO, GuestImage

HERE = Path(__file__).resolve().parent
GUEST_ADDRESS = "10.0.2.15"
AGENT_PORT = 7000


class GuestError(RuntimeError):
    """The guest did not boot, or the agent refused or failed a request."""


@dataclass(frozen=True)
class Result:
    rc: int | None
    stdout: str
    stderr: str


@dataclass
class GuestForward:
    """Guest connections to ``address:port`` go to whatever ``127.0.0.1:<port>`` the file
    ``target`` names at connect time (``point()`` rewrites it)."""

    address: str
    port: int
    target: Path

    def point(self, host_port: int) -> None:
        tmp = self.target.with_suffix(".tmp")
        tmp.write_text(f"127.0.0.1:{host_port}\n")
        tmp.replace(self.target)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Guest:
    image: GuestImage
    workdir: Path
    memory_mb: int = 2048
    forwards: dict[str, GuestForward] = field(default_factory=dict)
    iscsi_port: int = 0
    agent_port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None
    boot_seconds: float = 0.0

    @property
    def out(self) -> Path:
        return self.workdir / "out"

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "qemu.pid"

    @property
    def iscsi_portal(self) -> str:
        return f"127.0.0.1:{self.iscsi_port}"

    def forward(self, name: str, address: str, port: int) -> GuestForward:
        """Declare a guest forward before ``start()``."""
        fwd = GuestForward(address, port, self.workdir / f"fwd-{name}")
        fwd.target.write_text("127.0.0.1:9\n")
        self.forwards[name] = fwd
        return fwd

    def command(self) -> list[str]:
        nic = ["user", "model=e1000", "restrict=on",
               f"hostfwd=tcp:127.0.0.1:{self.iscsi_port}-:3260",
               f"hostfwd=tcp:127.0.0.1:{self.agent_port}-:{AGENT_PORT}"]
        for fwd in self.forwards.values():
            nic.append(f"guestfwd=tcp:{fwd.address}:{fwd.port}-cmd:{sys.executable} -I -S "
                       f"{HERE / 'relay.py'} {fwd.target}")
        if any("," in part for part in nic[3:]):
            raise GuestError(f"a comma in a qemu option would split it: {nic}")
        append = ("console=ttyS0 panic=-1 quiet sbps.src=1 sbps.out=1 "
                  f"sbps.token={self.token}")
        return ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", str(self.memory_mb),
                "-nodefaults", "-display", "none", "-monitor", "none",
                "-serial", f"file:{self.console}", "-pidfile", str(self.pidfile),
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", append, "-nic", ",".join(nic),
                "-virtfs", f"local,path={REPO},mount_tag=src,security_model=none,readonly=on",
                "-virtfs", f"local,path={self.out},mount_tag=out,security_model=none"]

    def start(self, timeout: float = 300) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.iscsi_port, self.agent_port = _free_port(), _free_port()
        started = time.monotonic()
        with open(self.workdir / "qemu.log", "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GuestError(f"qemu exited with {self.proc.returncode}: "
                                 f"{self._tail(self.workdir / 'qemu.log')}")
            with contextlib.suppress(OSError, GuestError, ValueError):
                if self.call("ping", timeout=5) == "pong":
                    self.boot_seconds = time.monotonic() - started
                    return
            time.sleep(1)
        self.stop()
        raise GuestError(f"guest agent not up after {timeout}s:\n{self._tail(self.console)}")

    @staticmethod
    def _tail(path: Path, size: int = 4000) -> str:
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def console_tail(self, size: int = 4000) -> str:
        return self._tail(self.console, size)

    def call(self, op: str, timeout: float = 600, **args: Any) -> Any:
        """One agent request; raises GuestError when the agent reports a failure."""
        with socket.create_connection(("127.0.0.1", self.agent_port), timeout=10) as sock:
            sock.settimeout(timeout + 30)
            with sock.makefile("rwb") as stream:
                stream.write(json.dumps({"token": self.token, "op": op, **args}).encode()
                             + b"\n")
                stream.flush()
                line = stream.readline()
        if not line:
            raise GuestError(f"agent closed the connection during {op}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise GuestError(f"agent {op}: {reply['error']}")
        return reply["result"]

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = True, input: str = "") -> Result:
        raw = self.call("run", argv=argv, env=env or {}, timeout=timeout, input=input)
        result = Result(raw["rc"], raw["stdout"], raw["stderr"])
        if check and result.rc != 0:
            raise GuestError(f"{' '.join(argv)} exited {result.rc}:\n{result.stdout[-3000:]}"
                             f"\n{result.stderr[-5000:]}")
        return result

    def sh(self, script: str, **kw: Any) -> Result:
        return self.run(["/bin/sh", "-c", script], **kw)

    def spawn(self, argv: list[str], log: str, env: dict[str, str] | None = None) -> int:
        return int(self.call("spawn", argv=argv, log=log, env=env or {}))

    def signal(self, pid: int, sig: int = signal.SIGTERM) -> None:
        self.call("signal", pid=pid, signal=int(sig))

    def wait(self, pid: int, timeout: float = 60) -> int | None:
        rc = self.call("wait", pid=pid, seconds=timeout, timeout=timeout + 10)
        return None if rc is None else int(rc)

    def poll(self, pid: int) -> int | None:
        rc = self.call("poll", pid=pid)
        return None if rc is None else int(rc)

    def stop(self) -> None:
        """SIGTERM the pid qemu wrote, then SIGKILL after 20 s."""
        if self.proc is None:
            return
        pid = self.proc.pid
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
