"""Security: the admin token is always required and a wrong one refused; secrets never leak.

A full scenario runs with known secret strings (the S3 secret in the credential file, the
TSIG secret, the admin token, the IMS bearer token, the CHAP secret and the S3 notification
secret), including errors (IMS failing, refused requests), and every captured output is
scanned: the daemon's log, every GET endpoint's answer (admin ones with the token), error
answers, and sbpsctl's outputs. The scanner's negative control plants a secret in an output.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbps.core import identity
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer
from tests.fixtures.marshal import Worker
from tests.fixtures.servers import IMS_TEST_TOKEN, IMSServer, S3Server
from tests.reliability.conftest import api_url, converge, count_crashes, http, run_pass
from tests.reliability.report import Figures, Report

ADMIN = [("GET", "/debug/state"), ("GET", "/debug/plan"), ("GET", "/debug/config"),
         ("GET", "/debug/tasks"), ("PUT", "/debug/loglevel"), ("POST", "/v1/reconcile"),
         ("POST", "/v1/drain"), ("POST", "/v1/images/x/hold")]


def leaks(outputs: dict[str, str], known: dict[str, str]) -> list[str]:
    """Where a secret (or its first 16 characters) appears."""
    found = []
    for what, text in outputs.items():
        for name, value in known.items():
            for probe in {value, value[:16]}:
                if probe and probe in text:
                    found.append(f"{name} in {what}")
    return sorted(set(found))


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def test_admin_token_required_and_no_secret_leaks(
        make_worker: Callable[..., Worker], ims_server_with_token: IMSServer,
        upload_ims_image: Callable[..., Any], knot_server: KnotServer, s3_server: S3Server,
        figures: Callable[[str], Figures], reliability_report: Report,
        tmp_path: Path) -> None:
    fig = figures("security: admin token, secrets in every output")
    ims = ims_server_with_token
    known = {"s3 secret": f"rel-s3-secret-{secrets.token_hex(12)}",
             "admin token": f"rel-admin-token-{secrets.token_hex(12)}",
             "chap secret": f"rel-chap-secret-{secrets.token_hex(8)}",
             "notify secret": f"rel-notify-secret-{secrets.token_hex(8)}",
             "tsig secret": knot_server.secret, "ims token": IMS_TEST_TOKEN}
    up = upload_ims_image("secure", label=True, ims=ims)
    w = make_worker(
        "ncn-w008", ims,
        node={"system_name": SYSTEM, "site_domain": DOMAIN},
        catalog={"auth": "token-file",
                 "token_file": _secret_file(tmp_path / "ims-token", IMS_TEST_TOKEN)},
        s3={"credential_file": _secret_file(tmp_path / "s3.cred",
                                            f"sbps-rel-key:{known['s3 secret']}")},
        http={"admin_token_file": _secret_file(tmp_path / "admin", known["admin token"])},
        target={"chap_user_file": _secret_file(tmp_path / "chap-user", "sbpsnode"),
                "chap_secret_file": _secret_file(tmp_path / "chap", known["chap secret"])},
        reconcile={"notify_secret_file": _secret_file(tmp_path / "notify",
                                                      known["notify secret"])},
        dns={"mode": "rfc2136", "server": "127.0.0.1", "port": knot_server.port,
             "tsig_key_file": str(knot_server.key_file), "hsn_address": "127.0.0.11",
             "nmn_address": "127.0.0.12"})
    w.start()
    serial = identity.rootfs(up.rootfs_url, up.rootfs_etag).serial
    assert converge(w, {serial})
    url, token = api_url(w), known["admin token"]
    outputs: dict[str, str] = {}

    # Admin endpoints: no token, a wrong one, a prefix of the right one, another scheme.
    for method, path in ADMIN:
        for bad in (None, "wrong", token[:-1], token + "x"):
            status, body = http(url + path, token=bad, method=method,
                                body=b"{}" if method != "GET" else None)
            fig.faults += 1
            outputs[f"{method} {path} with a bad token"] = body.decode(errors="replace")
            if status not in (401, 403):
                fig.notes.append(f"{method} {path} with token {bad!r}: {status}")
                fig.leaked += 1  # an open admin endpoint is a leak of every secret
    status, body = http(f"{url}/v1/notify/wrong-secret", method="POST", body=b"{}")
    outputs["POST /v1/notify with a wrong secret"] = body.decode(errors="replace")
    assert status in (401, 403, 404), status

    # Errors while running: IMS fails for a pass, S3 refuses a bad key.
    ims.faults(status=500, count=1000)
    st = run_pass(w)
    ims.clear_faults()
    assert st["degraded"], st
    run_pass(w)

    for path in ("/healthz", "/readyz", "/openapi.yaml", "/v1/images", "/v1/target",
                 f"/v1/images/{up.ims_id}", f"/v1/bootparams/{up.ims_id}", "/metrics",
                 "/v1/images/no-such-image", "/v1/bootparams/..%2F..%2Fetc",
                 "/debug/state", "/debug/plan", "/debug/config", "/debug/tasks"):
        status, body = http(url + path, token=token)
        outputs[f"GET {path}"] = body.decode(errors="replace")
        fig.inputs += 1
        assert status < 500, (path, status, body[:300])
    for args in (["status"], ["images"], ["plan"], ["config", "show"], ["config", "check"],
                 ["luns", "list"], ["luns", "verify"], ["bootparams", up.ims_id]):
        extra = ["--url", url] if args[0] in ("status", "images", "plan") else []
        r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()",
                            "--config", str(w.config_path), *args, *extra, "--json"],
                           capture_output=True, text=True, timeout=120)
        outputs[f"sbpsctl {' '.join(args)}"] = r.stdout + r.stderr
        fig.inputs += 1
        if r.returncode not in (0, 1):
            fig.notes.append(f"sbpsctl {' '.join(args)}: exit {r.returncode}: "
                             f"{r.stderr[-300:]}")
    count_crashes(w, fig)
    assert w.stop() == 0
    outputs["daemon log"] = w.log()
    fig.inputs += 1
    found = leaks(outputs, known)
    fig.leaked += len(found)
    fig.notes.extend(found)
    fig.runs += 1

    control = leaks({"planted log line": f"debug: key {known['tsig secret']} loaded"}, known)
    reliability_report.control("secrets leaked", "the TSIG secret planted in a log line",
                               len(control))
    assert control
    assert json.loads(outputs["GET /debug/config"]), "the redacted configuration is served"
    assert fig.losses == 0, fig.notes
