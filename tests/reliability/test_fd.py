"""File-descriptor exhaustion at ``ulimit -n 1024``: about 1,100 slow HTTP connections
(each sends half a request header and then nothing) held against a daemon whose
RLIMIT_NOFILE is 1024 (soft and hard, set inside it by tests.fixtures.plant).

Wanted, within a bounded time: ``/healthz`` answers 200, passes keep succeeding (a pass a
second, none failing, no "Too many open files"), the log does not fill with tracebacks, and
the daemon does not crash.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps import identity
from tests.fixtures.marshal import Worker
from tests.fixtures.plant import plant_env
from tests.fixtures.servers import IMSServer
from tests.reliability.conftest import api_url, converge, count_crashes, http, log_lines
from tests.reliability.report import Figures

LIMIT = 1024
SLOW = 1100
WINDOW = 40.0


def _slow_connections(port: int, n: int) -> list[socket.socket]:
    held = []
    for _ in range(n):
        sock = socket.socket()
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


def _good_passes(w: Worker, start: int) -> tuple[int, int]:
    good = bad = 0
    for d in log_lines(w, start):
        msg = str(d.get("msg", ""))
        if msg.startswith("pass ") and " finished " in msg:
            if ", 0 failed" in msg and "errors" not in msg:
                good += 1
            else:
                bad += 1
    return good, bad


def test_fd_exhaustion_healthz_answers_and_passes_go_on(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], figures: Callable[[str], Figures],
        tmp_path: Path) -> None:
    fig = figures(f"fd exhaustion: {SLOW} slow connections at ulimit -n {LIMIT}")
    up = upload_ims_image("fd", label=True)
    serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial
    w = make_worker("ncn-w041", ims_server)
    w.start(**plant_env(tmp_path / "plant", nofile=LIMIT))
    assert converge(w, {serial}), w.log()[-3000:]
    url = api_url(w)
    port = int(url.rsplit(":", 1)[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * SLOW)), hard))
    mark, size = len(w.log()), w.log_path.stat().st_size
    held = _slow_connections(port, SLOW)
    fig.faults = len(held)
    answered: list[float] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < WINDOW:
            try:
                status, _ = http(f"{url}/healthz", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                answered.append(time.monotonic() - t0)
            time.sleep(1)
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    good, bad = _good_passes(w, mark)
    emfile = w.log()[mark:].count("Too many open files")
    grown = w.log_path.stat().st_size - size
    fig.runs = good
    fig.notes.append(f"{len(held)} connections held; /healthz answered {len(answered)} of "
                     f"about {WINDOW:.0f} probes (first after "
                     f"{answered[0] if answered else float('nan'):.1f} s); {good} passes "
                     f"succeeded, {bad} failed; 'Too many open files' {emfile} times; log "
                     f"grew {grown} bytes")
    count_crashes(w, fig)
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
    assert answered and answered[-1] > WINDOW - 5, "healthz must answer, and keep answering"
    assert good >= 5 and bad == 0 and emfile == 0, fig.notes
    assert grown < 1 << 20, f"the log grew by {grown} bytes in {WINDOW:.0f} s"
