"""File-descriptor exhaustion at ``ulimit -n 1024``: about 1,100 slow HTTP connections
(each sends half a request header and then nothing), or 2,000 long polls (complete
requests for the catalog that wait for a change), held against a daemon whose
RLIMIT_NOFILE is 1024 (soft and hard, set inside it by tests.fixtures.plant).

Wanted, within a bounded time: ``/healthz`` answers 200, passes keep succeeding (a pass a
second, none failing, no "Too many open files"), the log does not fill with tracebacks, and
the daemon does not crash.
"""

from __future__ import annotations

import resource
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbps.core import identity
from tests.fixtures.marshal import Worker
from tests.fixtures.plant import plant_env
from tests.fixtures.servers import IMSServer
from tests.reliability.conftest import api_url, converge, count_crashes, http, log_lines
from tests.reliability.report import Figures

LIMIT = 1024
SLOW = 1100
WINDOW = 40.0


SLOW_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
LONG_POLLS = 2000


def _long_poll(url: str) -> bytes:
    """A whole request for the catalog that waits (up to 300 s) for it to change."""
    with urllib.request.urlopen(f"{url}/v1/images", timeout=10) as r:
        etag = r.headers["ETag"]
    return (f"GET /v1/images?wait=300 HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n"
            "\r\n").encode()


def _slow_connections(port: int, n: int, request: bytes = SLOW_REQUEST) -> list[socket.socket]:
    held = []
    for _ in range(n):
        sock = socket.socket()
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(request)
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


@pytest.mark.parametrize("kind", ["slow connections", "long polls"])
def test_fd_exhaustion_healthz_answers_and_passes_go_on(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], figures: Callable[[str], Figures],
        tmp_path: Path, kind: str) -> None:
    count = SLOW if kind == "slow connections" else LONG_POLLS
    fig = figures(f"fd exhaustion: {count} {kind} at ulimit -n {LIMIT}")
    up = upload_ims_image("fd", label=True)
    serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial
    w = make_worker("ncn-w041", ims_server)
    w.start(**plant_env(tmp_path / "plant", nofile=LIMIT))
    assert converge(w, {serial}), w.log()[-3000:]
    url = api_url(w)
    port = int(url.rsplit(":", 1)[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * count)), hard))
    mark, size = len(w.log()), w.log_path.stat().st_size
    held = _slow_connections(port, count, SLOW_REQUEST if kind == "slow connections"
                             else _long_poll(url))
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
