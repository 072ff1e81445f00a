"""Development servers on loopback for the demo: moto (S3), the dev IMS server, tgtd, Knot.

Owns starting each one as its own process on free 127.0.0.1 ports, waiting until it
answers, and stopping it by its pid (tgtd ignores SIGTERM: its targets are deleted and the
system is asked to exit, SIGKILL last). Every file lives under the caller's directory.
These are development tools of a source checkout (the dev IMS server lives in
``contrib/``); the marshal never imports this module.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KEY_NAME = "sbps-demo-key"


class DevStackError(RuntimeError):
    """A development server could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevStackError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise DevStackError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _exe(name: str, hint: str) -> str:
    """A system program (tgtd, knotd) from PATH."""
    found = shutil.which(name)
    if found is None:
        raise DevStackError(f"{name} is not installed ({hint})")
    return found


def _python_tool(module: str, hint: str) -> list[str]:
    """A Python server run by this very interpreter, so the demo uses the version pinned in
    its own environment, never whatever of the same name comes first on PATH."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise DevStackError(f"{module} is not installed in {sys.prefix} ({hint})")
    return [sys.executable, "-m", module]


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def start_moto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = _spawn([*_python_tool("moto.server", "pip install 'moto[server]'"), "-H",
                   "127.0.0.1", "-p", str(port)], workdir / "moto.log")
    wait_port(port, proc, "moto_server")
    return proc, f"http://127.0.0.1:{port}"


def start_ims(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    script = REPO / "contrib" / "ims_dev_server.py"
    if not script.exists():
        raise DevStackError(f"{script} is missing: the demo runs from a source checkout")
    port = free_port()
    proc = _spawn([sys.executable, str(script), "--port", str(port), "--state",
                   str(workdir / "ims-state.json")], workdir / "ims.log")
    wait_port(port, proc, "the dev IMS server")
    return proc, f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Tgtd:
    proc: subprocess.Popen[bytes]
    control_port: int
    port: int


def start_tgtd(workdir: Path) -> Tgtd:
    exe = _exe("tgtd", "apt-get install tgt") if shutil.which("tgtd") else "/usr/sbin/tgtd"
    for control in range(200, 1000):
        if not os.path.exists(f"/var/run/tgtd/socket.{control}.lock"):
            break
    port = free_port()
    proc = _spawn([exe, "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{port}"],
                  workdir / "tgtd.log")
    wait_port(port, proc, "tgtd")
    return Tgtd(proc, control, port)


def stop_tgtd(t: Tgtd, timeout: float = 10) -> None:
    """tgtd ignores SIGTERM: delete every target (forced), then the system; SIGKILL last."""
    adm = ["tgtadm", "-C", str(t.control_port), "--lld", "iscsi"]
    show = subprocess.run(adm + ["--mode", "target", "--op", "show"], capture_output=True,
                          text=True, timeout=10, check=False).stdout
    for line in show.splitlines():
        if line.startswith("Target ") and ":" in line:
            tid = line.split()[1].rstrip(":")
            subprocess.run(adm + ["--mode", "target", "--op", "delete", "--force", "--tid", tid],
                           capture_output=True, timeout=10, check=False)
    subprocess.run(["tgtadm", "-C", str(t.control_port), "--mode", "system", "--op", "delete"],
                   capture_output=True, timeout=10, check=False)
    try:
        t.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        t.proc.kill()
        t.proc.wait(timeout)


@dataclass(frozen=True)
class Knot:
    proc: subprocess.Popen[bytes]
    port: int
    key_file: Path


def start_knot(workdir: Path, zones: list[str]) -> Knot:
    """knotd serving ``zones`` (empty but for SOA/NS), updatable with a fresh TSIG key."""
    exe = _exe("knotd", "apt-get install knot")
    root = workdir / "knot"
    for sub in ("run", "db", "zones"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    secret = base64.b64encode(os.urandom(32)).decode()
    key_file = root / "tsig.key"
    key_file.write_text(f'key "{KEY_NAME}" {{\n    algorithm hmac-sha256;\n'
                        f'    secret "{secret}";\n}};\n')
    key_file.chmod(0o600)
    port = free_port()
    entries = []
    for zone in zones:
        (root / "zones" / f"{zone}.zone").write_text(
            f"$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 "
            f"86400 60\n@ NS ns1.{zone}.\nns1 A 127.0.0.1\n")
        entries.append(f'  - domain: {zone}\n    storage: "{root}/zones"\n'
                       f'    file: "{zone}.zone"\n    acl: update\n')
    conf = root / "knot.conf"
    conf.write_text(f'server:\n    rundir: "{root}/run"\n    listen: 127.0.0.1@{port}\n'
                    f'database:\n    storage: "{root}/db"\n'
                    f"key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n"
                    f"acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n"
                    "zone:\n" + "".join(entries))
    conf.chmod(0o600)
    proc = _spawn([exe, "-c", str(conf)], root / "knotd.log")
    wait_port(port, proc, "knotd")
    return Knot(proc, port, key_file)
