"""The systemd notify protocol of a running marshal: READY=1 after the first pass, STATUS=,
WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM; and exit codes."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.core import identity
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd
from tests.fixtures.unit_confine import capabilities, setpriv_argv


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


def test_the_units_capabilities_are_enough_on_both_backends(
        make_worker: Callable[..., Worker], ims_server: IMSServer, tgtd: Tgtd,
        upload_ims_image: Callable[..., Any], tmp_path: Path) -> None:
    """The daemon under the unit's CapabilityBoundingSet and NoNewPrivileges (applied with
    setpriv, as far as that goes without systemd) exports, serves and stops cleanly on the
    LIO emulation and on tgt; the capabilities it ran with are the unit's, no more."""
    up = upload_ims_image("compute", label=True)
    serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial
    keep = {f"cap_{c}" for c in capabilities()}
    for w in (make_worker("ncn-w001", ims_server),
              make_worker("ncn-w002", ims_server, backend="tgt", tgtd=tgtd)):
        w.prefix = tuple(setpriv_argv())
        w.start()
        if w.mount is not None:
            wait_until("the LIO export", lambda w=w: any(
                lun["serial"] == serial for lun in w.luns().values()), worker=w)
        else:
            wait_until("the tgt export", lambda w=w: any(
                lu.scsi_sn == serial for lu in w.tgt_luns().values()), worker=w)
        assert w.proc is not None
        status = Path(f"/proc/{w.proc.pid}/status").read_text()
        assert _caps(status, "CapEff") == keep and _caps(status, "CapBnd") == keep
        assert "NoNewPrivs:\t1" in status
        assert w.stop() == 0, w.log()[-3000:]
        assert "Operation not permitted" not in w.log(), w.log()[-3000:]


def _caps(status: str, field: str) -> set[str]:
    value = int(next(line.split()[1] for line in status.splitlines()
                     if line.startswith(f"{field}:")), 16)
    names = {1: "cap_dac_override", 10: "cap_net_bind_service", 21: "cap_sys_admin",
             0: "cap_chown", 16: "cap_sys_module"}
    return {names.get(bit, f"cap_{bit}") for bit in range(64) if value >> bit & 1}
