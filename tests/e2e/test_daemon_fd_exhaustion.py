"""A running marshal at ``ulimit -n 1024`` under 1,100 slow HTTP connections (issue 20,
item 4): health checks answer, passes keep succeeding, the log stays small. Without the
connection cap and the descriptor reserve, the accept loop takes every descriptor: /healthz
times out, passes fail with "Too many open files" and the log fills with tracebacks."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.slow_clients import SlowClients

FLOOD = 1100


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def successes(url: str) -> float:
    status, body = get(f"{url}/metrics")
    if status != 200:
        return -1
    line = next((x for x in body.decode().splitlines()
                 if x.startswith('sbps_reconcile_runs_total{result="success"}')), None)
    return float(line.split()[-1]) if line else -1


def test_slow_connection_flood_at_ulimit_1024(make_worker: Callable[..., Worker],
                                              ims_server: IMSServer,
                                              upload_ims_image: Callable[..., Any]) -> None:
    up = upload_ims_image("compute", label=True)
    w = make_worker("ncn-w001", ims_server, reconcile={"interval": "1s"},
                    http={"port": 0, "header_timeout": "60s",
                                          "max_connections": 2000})
    w.nofile = 1024
    w.start()
    url = wait_until("the API URL", lambda: (w.root / "state/http-url").exists()
                     and (w.root / "state/http-url").read_text().strip(), worker=w)

    def exported() -> bool:
        status, body = get(f"{url}/v1/images")
        return status == 200 and any(i["ims_id"] == up.ims_id and i["state"] == "exported"
                                     for i in json.loads(body)["images"])

    wait_until("the image to be exported", exported, timeout=120, worker=w)
    with SlowClients("127.0.0.1", int(url.rsplit(":", 1)[1])) as slow:
        slow.open(FLOOD)
        before = successes(url)
        start = time.monotonic()
        # /healthz answers while the slow connections are held...
        assert wait_until("/healthz", lambda: get(f"{url}/healthz")[0] == 200,
                          timeout=30, worker=w)
        # ...and passes keep succeeding (S3, the target: all need descriptors).
        wait_until("two more successful passes", lambda: successes(url) >= before + 2,
                   timeout=60, worker=w)
        states = slow.states()
        assert states["open"] < FLOOD, states  # the cap held
        assert time.monotonic() - start < 90
    log = w.log()
    assert "Too many open files" not in log, log[-3000:]
    # 2,000 connections do not fit in 1,024 descriptors beside the reconciler's reserve.
    assert "http.max_connections lowered from 2000" in log
    assert len(log.encode()) < 5 << 20
    assert w.stop() == 0
