"""Issue 20 item 1 on a running marshal: a deeply nested IMS record, manifest and claim-like
input, and a bug planted in a pass, fail only their document or their pass. The daemon
keeps running, the other images stay exported and DNS stays registered (read back from
Knot); only a deliberate stop withdraws DNS."""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_daemon_gate_dns import dns_settings, srv_targets
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer
from tests.fixtures.marshal import Worker, _env, wait_until
from tests.fixtures.servers import IMSServer

DEPTH = 100_000
NESTED = b"[" * DEPTH + b"]" * DEPTH


def nested_record() -> str:
    return '{"id": "nested", "metadata": {"sbps-project": "true"}, "x": ' + \
        NESTED.decode() + "}"


def metrics(w: Worker) -> str:
    url = (w.root / "state/http-url").read_text().strip()
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            return str(r.read().decode())
    except OSError as exc:
        code = w.proc.poll() if w.proc is not None else None
        raise AssertionError(f"marshal gone (exit {code}): {exc}\n{w.log()[-3000:]}") from exc


def sample(text: str, name: str, **labels: str) -> float:
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for m in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M):
        if set(m.group(1).split(",")) == want:
            return float(m.group(2))
    return 0.0


def test_nested_record_and_manifest_leave_the_daemon_and_the_other_images_alone(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer,
        s3_client: Any, s3_bucket: str) -> None:
    upload_ims_image("a")
    b = upload_ims_image("b")
    w = make_worker("ncn-w011", ims_server, dns=dns_settings(knot_server),
                    node={"system_name": SYSTEM, "site_domain": DOMAIN})
    w.start()
    wait_until("two exports", lambda: len(w.luns()) == 2, worker=w)
    wait_until("registered", lambda: srv_targets(knot_server), worker=w)
    luns = w.luns()
    # A record nested 100,000 deep in the list, and b's manifest replaced by one.
    ims_server.faults(list_extra=nested_record(), count=10**6)
    key = f"{b.ims_id}/manifest.json"
    etag = s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b'{"artifacts": ' + NESTED +
                                b"}")["ETag"].strip('"')
    ims_server.json("PATCH", f"/v3/images/{b.ims_id}",
                    {"link": dict(b.record["link"], etag=etag)})
    wait_until("both rejections counted", lambda: sample(
        metrics(w), "sbps_documents_rejected_total", source="record", reason="too_deep") >= 1
        and sample(metrics(w), "sbps_documents_rejected_total", source="manifest",
                   reason="too_deep") >= 1, worker=w)
    before = sample(metrics(w), "sbps_reconcile_runs_total", result="success") + \
        sample(metrics(w), "sbps_reconcile_runs_total", result="error")
    wait_until("three more passes", lambda: sample(
        metrics(w), "sbps_reconcile_runs_total", result="success") + sample(
        metrics(w), "sbps_reconcile_runs_total", result="error") >= before + 3, worker=w)
    assert w.proc is not None and w.proc.poll() is None
    assert w.luns() == luns, "both images stay exported (b at its last known good version)"
    assert srv_targets(knot_server), "DNS stays registered"
    assert "RecursionError" not in w.log()
    assert w.stop() == 0
    assert not srv_targets(knot_server), "a deliberate stop withdraws DNS"


SITECUSTOMIZE = '''
import os
import sbps.reconcile.plan

_plan = sbps.reconcile.plan.plan


def plan(inp):
    if os.path.exists({flag!r}):
        raise RuntimeError("planted bug")
    return _plan(inp)


sbps.reconcile.plan.plan = plan
'''


def test_a_bug_in_a_pass_fails_that_pass_not_the_daemon(
        make_worker: Callable[..., Worker], ims_server: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer,
        tmp_path: Path) -> None:
    upload_ims_image("compute")
    flag = tmp_path / "bug"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(flag=str(flag)))
    w = make_worker("ncn-w012", ims_server, dns=dns_settings(knot_server),
                    node={"system_name": SYSTEM, "site_domain": DOMAIN})
    w.start(PYTHONPATH=f"{site}{os.pathsep}{_env()['PYTHONPATH']}")
    wait_until("the export", w.luns, worker=w)
    wait_until("registered", lambda: srv_targets(knot_server), worker=w)
    luns = w.luns()
    flag.touch()
    wait_until("two failed passes", lambda: sample(
        metrics(w), "sbps_reconcile_runs_total", result="bug") >= 2, worker=w, timeout=90)
    log = w.log()
    assert log.count("planted bug") >= 2 and log.count("Traceback") <= 1, \
        "the traceback is logged once, not every pass"
    assert w.proc is not None and w.proc.poll() is None
    assert w.luns() == luns and srv_targets(knot_server)
    flag.unlink()
    done = sample(metrics(w), "sbps_reconcile_runs_total", result="success")
    wait_until("a good pass again", lambda: sample(
        metrics(w), "sbps_reconcile_runs_total", result="success") > done, worker=w,
        timeout=90)
    assert w.stop() == 0
    assert not srv_targets(knot_server)
