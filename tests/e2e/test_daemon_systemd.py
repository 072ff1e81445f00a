"""The systemd notify protocol of a running marshal: READY=1 after the first pass, STATUS=,
WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM; and exit codes."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.marshal import Worker
from tests.fixtures.servers import IMSServer


def receive(sock: socket.socket, until: str, timeout: float = 60) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m for m in got):
            return got
    raise AssertionError(f"no {until} in {got}")


def test_ready_watchdog_and_stopping(make_worker: Callable[..., Worker], ims_server: IMSServer,
                                     upload_ims_image: Callable[..., Any],
                                     tmp_path: Path) -> None:
    upload_ims_image("compute", label=True)
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        w = make_worker("ncn-w001", ims_server)
        w.start(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        messages = receive(sock, "READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=pass 1:" in ready
        messages = receive(sock, "WATCHDOG=1", timeout=10)
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in receive(sock, "STOPPING=1", timeout=30))
        assert w.proc.wait(30) == 0


def test_configuration_error_exits_2(make_worker: Callable[..., Worker],
                                     ims_server: IMSServer) -> None:
    w = make_worker("ncn-w001", ims_server, target={"lun_max": 99999})
    result = w.once()
    assert result.returncode == 2
    assert "target.lun_max" in result.stderr
