"""``sbpsctl sessions`` and ``sbpsctl why`` against a running marshal (tgt, a real initiator
logged in and reading), and ``why`` asking IMS about a record the daemon does not know."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.e2e.tgt_client import exported, session
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd


def _sbpsctl(w: Worker, *args: str) -> tuple[int, Any]:
    r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()", "--config",
                        str(w.config_path), *args, "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_sessions_and_why_on_a_running_worker(
        tgtd: Tgtd, make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any]) -> None:
    up = upload_ims_image("compute", label=True)
    other = upload_ims_image("unlabelled", label=False)
    w = make_worker("ncn-w001", ims_server, backend="tgt", tgtd=tgtd)
    w.start()
    lun = exported(w, up)
    wait_until("the API URL", lambda: (w.root / "state/http-url").exists(), worker=w)
    with session(w, lun) as s:
        s.call("read_all", 64)
        code, doc = _sbpsctl(w, "sessions")
        assert code == 0
        (me,) = doc["sessions"]
        assert me["initiator"].startswith("iqn.") and me["addresses"]
        assert [x["lun_id"] for x in me["luns"]] == [lun] and me["luns"][0]["read_bytes"] > 0
    code, doc = _sbpsctl(w, "why", up.ims_id)
    assert code == 0 and doc["exported"] and all(s["ok"] for s in doc["steps"])
    code, doc = _sbpsctl(w, "why", other.ims_id)
    assert code == 1 and not doc["known"]
    label = doc["steps"][-1]
    assert label["step"] == "label" and label["ok"] is False and "not labelled" in label["detail"]
    assert w.stop() == 0


def test_sessions_per_initiator_with_explicit_acls_on_lio(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any]) -> None:
    node, stranger = "iqn.2026-01.com.example:node7", "iqn.2026-01.com.example:node8"
    upload_ims_image("compute", label=True)
    w = make_worker("ncn-w002", ims_server, target={"access": "acl", "initiators": [node]})
    w.start()
    luns = wait_until("the export", w.luns, worker=w)
    (lun,) = luns
    wait_until("the API URL", lambda: (w.root / "state/http-url").exists(), worker=w)
    acl = f"{w.emulation.target}/iscsi/{w.iqn}/tpgt_1/acls/{node}"
    wait_until("the node's ACL with its LUN", lambda: os.path.isdir(f"{acl}/lun_{lun}"),
               worker=w)
    control = w.emulation.control
    control.add_session(w.iqn, node)
    control.read(f"target/iscsi/{w.iqn}/tpgt_1/lun/lun_{lun}", 3 << 20, initiator=node)
    code, doc = _sbpsctl(w, "sessions")
    assert code == 0
    (me,) = doc["sessions"]
    assert me["initiator"] == node and stranger not in json.dumps(doc)
    assert me["luns"] == [{"lun_id": lun, "key": luns[lun]["name"], "read_bytes": 3 << 20,
                           "commands": 1}]
    assert w.stop() == 0
