"""The daemon's HTTP API on a running marshal: catalog, metrics from real I/O counters,
admin token, manual trigger."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sbps.core import identity
from tests.fixtures.images import PROJECT_LABEL
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import SECRET_KEY, IMSServer
from tests.fixtures.web import get


def api(w: Worker) -> str:
    return wait_until("the API URL", lambda: (w.root / "state/http-url").exists()
                      and (w.root / "state/http-url").read_text().strip(), worker=w)


def test_api_catalog_metrics_and_admin(make_worker: Callable[..., Worker],
                                       ims_server: IMSServer,
                                       upload_ims_image: Callable[..., Any]) -> None:
    up = upload_ims_image("compute", label=False)
    w = make_worker("ncn-w001", ims_server, reconcile={"interval": "1h"})
    w.start()
    url = api(w)
    token = (w.root / "state/admin-token").read_text().strip()
    assert (w.root / "state/admin-token").stat().st_mode & 0o777 == 0o600
    assert get(f"{url}/v1/reconcile", method="POST")[0] == 401
    assert get(f"{url}/v1/reconcile", token="wrong", method="POST")[0] == 401
    ims_server.set_label(up.ims_id, PROJECT_LABEL)
    # The interval is an hour: only the manual trigger can export it.
    status, _ = get(f"{url}/v1/reconcile?wait=1", token=token, method="POST")
    assert status == 200
    serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial

    def exported() -> dict[str, Any] | None:
        body = json.loads(get(f"{url}/v1/images")[1])
        hits = [i for i in body["images"] if i["serial"] == serial and i["state"] == "exported"]
        return hits[0] if hits else None

    entry = wait_until("the catalog to list the export", exported, worker=w)
    assert entry["ims_id"] == up.ims_id and entry["size"] == up.rootfs_size
    lun = entry["lun_id"]

    def read_mbytes() -> float:
        metrics = get(f"{url}/metrics")[1].decode()
        return float(next(x for x in metrics.splitlines() if x.startswith(
            "iscsi_read_mbytes{") and f'lun="{lun}"' in x).split()[-1])

    # Every read that finished before a scrape is in it, however close the scrapes are.
    before = read_mbytes()
    for n in range(1, 4):
        w.emulation.control.read(f"target/iscsi/{w.iqn}/tpgt_1/lun/lun_{lun}", 5 << 20)
        assert read_mbytes() >= before + 5 * n
    w.emulation.control.add_session(w.iqn, "iqn.2026-01.test:node7")
    get(f"{url}/v1/reconcile?wait=1", token=token, method="POST")
    metrics = get(f"{url}/metrics")[1].decode()
    assert f'sbps_sessions{{target="{w.iqn}"}} 1.0' in metrics, metrics[-3000:]
    assert get(f"{url}/debug/config")[0] == 401
    cfg_status, cfg_body = get(f"{url}/debug/config", token=token)
    assert cfg_status == 200
    assert SECRET_KEY.encode() not in cfg_body and token.encode() not in cfg_body
    assert get(f"{url}/readyz")[0] == 200
    assert w.stop() == 0


def test_luns_verify_checks_the_live_target(make_worker: Callable[..., Worker],
                                            ims_server: IMSServer,
                                            upload_ims_image: Callable[..., Any]) -> None:
    import subprocess
    import sys

    for name in ("a", "b"):
        upload_ims_image(name, label=True)
    w = make_worker("ncn-w001", ims_server)
    w.start()
    url = api(w)
    wait_until("two exports in the daemon's snapshot",
               lambda: len(json.loads(get(f"{url}/v1/target")[1])["luns"]) == 2, worker=w)
    r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()", "--config",
                        str(w.config_path), "luns", "verify", "--url", url, "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["exported_source"] == "target" and doc["exported"] == 2 and not doc["problems"]
    assert w.stop() == 0
