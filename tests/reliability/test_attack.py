"""The security scenario, on both backends (LIO on the configfs emulation, tgt on a real
tgtd), run as an attacker on the same host and network would:

- a ``ps`` scan (every process's argv and environment) while CHAP accounts are created at
  start and rotated, for the CHAP secrets and every other secret;
- the modes of every state file that can hold a secret (a stale 0644 temp file of
  ``saveconfig.json`` planted first, on LIO);
- the confused deputy: ``GET /v1/bootparams/{id}`` for a record not in the catalog whose
  manifest points into another bucket (404, no S3 request, no secret), and for an unknown
  id (404, no internal URL);
- the foreign bucket: a labelled record whose rootfs is in another bucket is not exported;
- a non-UTF-8 ``Authorization`` header (401) and an oversized header (4xx or refused);
- 3,000 wrong guesses at ``/v1/notify/{secret}`` (throttled: 429s, counted in a metric);
- a second instance with the same configuration (exits 1, one line, touches nothing: the
  exports and DNS records of the first stay).

Exposure (a secret seen, a file too open, a foreign object served or exported) counts in
"secrets leaked"; a 5xx or a dead daemon in "crashes".
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from http import client as http_client
from pathlib import Path
from typing import Any

import pytest

from sbps.core import identity
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer, query
from tests.fixtures.marshal import Worker, _env, wait_until
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.servers import IMSServer, S3Server
from tests.reliability import detectors as det
from tests.reliability.conftest import api_url, count_crashes, http, run_pass
from tests.reliability.probes import ProcScan, loose_modes, raw_status
from tests.reliability.report import Figures, Report
from tests.reliability.scale import Scale

SRV = f"_sbps-hsn._tcp.{SYSTEM}.{DOMAIN}."
BOOT = "application/vnd.cray.image.parameters.boot"
ROOTFS = "application/vnd.cray.image.rootfs.squashfs"


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def _rewrite(image: Any, s3_client: Any, bucket: str, ims: IMSServer,
             edit: Callable[[dict[str, Any]], None]) -> None:
    key = image.manifest_url.split("/", 3)[3]
    doc = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    edit(doc)
    etag = s3_client.put_object(Bucket=bucket, Key=key,
                                Body=json.dumps(doc).encode())["ETag"].strip('"')
    ims.json("PATCH", f"/v3/images/{image.ims_id}",
             {"link": {"path": image.manifest_url, "etag": etag, "type": "s3"}})


def _link(doc: dict[str, Any], kind: str, path: str, etag: str) -> None:
    arts = [a for a in doc["artifacts"] if a.get("type") != kind]
    doc["artifacts"] = [*arts, {"type": kind, "link": {"path": path, "etag": etag,
                                                        "type": "s3"}}]


def _srv(knot: KnotServer) -> set[str]:
    try:
        return query(knot.port, SRV, "SRV")
    except Exception:  # not answering: nothing registered that anyone can see
        return set()


@pytest.mark.parametrize("backend", ["lio", "tgt"])
def test_attacker_on_the_host_and_network(
        backend: str, request: pytest.FixtureRequest, make_worker: Callable[..., Worker],
        ims_server: IMSServer, upload_ims_image: Callable[..., Any], knot_server: KnotServer,
        fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server, s3_client: Any,
        s3_bucket: str, scale: Scale, figures: Callable[[str], Figures],
        reliability_report: Report, tmp_path: Path) -> None:
    fig = figures(f"security: attacker on the host and network ({backend})")
    tgtd = request.getfixturevalue("tgtd") if backend == "tgt" else None
    proxy = fault_proxy(s3_server.endpoint)
    chap_file = tmp_path / "chap"
    known = {"chap secret": f"relchap{secrets.token_hex(6)}",
             "admin token": f"rel-admin-{secrets.token_hex(12)}",
             "notify secret": f"rel-notify-{secrets.token_hex(8)}",
             "tsig secret": knot_server.secret}
    good = upload_ims_image("attack-good", label=True)
    serial = identity.rootfs(good.rootfs_url, good.rootfs_etag).serial
    w = make_worker(
        {"lio": "ncn-w031", "tgt": "ncn-w032"}[backend], ims_server, backend=backend, tgtd=tgtd,
        node={"system_name": SYSTEM, "site_domain": DOMAIN},
        s3={"endpoint": proxy.endpoint},
        http={"admin_token_file": _secret_file(tmp_path / "admin", known["admin token"])},
        target={"chap_user_file": _secret_file(tmp_path / "chap-user", "sbpsnode"),
                "chap_secret_file": _secret_file(chap_file, known["chap secret"])},
        reconcile={"interval": "1h", "retire_grace": "0s",
                   "notify_secret_file": _secret_file(tmp_path / "notify",
                                                      known["notify secret"])},
        dns={"mode": "rfc2136", "server": "127.0.0.1", "port": knot_server.port,
             "tsig_key_file": str(knot_server.key_file), "hsn_address": "127.0.0.11",
             "nmn_address": "127.0.0.12", "withdraw_on_stop": True})

    def exports() -> set[str]:
        found = det.tgt_exports(tgtd, w.iqn) if tgtd is not None else det.lio_exports(w.luns())
        return {e.serial for e in found}

    def expose(what: str) -> None:
        fig.leaked += 1
        fig.notes.append(what)

    def broken(what: str) -> None:
        fig.crashes += 1
        fig.notes.append(what)

    save = w.settings["target"].get("saveconfig_path")
    if save:  # an older saveconfig.json and a stale temp file, both 0644 (targetcli's)
        for stale in (save, f"{save}.sbps-tmp"):
            Path(stale).write_text(json.dumps({"fabric_modules": [], "storage_objects": [],
                                               "targets": []}))
            Path(stale).chmod(0o644)

    # 1. ps while CHAP accounts are created and rotated.
    rotations = 5 * (scale.fault_rounds + 1)
    with ProcScan(dict(known)) as scan:
        w.start()
        wait_until("the first export", lambda: serial in exports(), worker=w, timeout=90)
        for n in range(rotations):
            scan.secrets[f"rotated chap secret {n}"] = new = f"relchap{secrets.token_hex(6)}"
            chap_file.write_text(new + "\n")
            run_pass(w)
            run_pass(w)
            fig.faults += 1
    for found in sorted(scan.found):
        expose(f"ps: {found}")
    fig.notes.append(f"ps scan: {scan.scans} sweeps of /proc over {rotations} CHAP "
                     "rotations and the start")
    control = ProcScan({"planted": known["chap secret"]})
    with control:
        subprocess.run(["sh", "-c", "sleep 0.5; true", "tgtadm", "--password",
                        known["chap secret"]], check=True)
    reliability_report.control(f"secrets leaked (ps scan, {backend})", "a 0.5 s process with the CHAP "
                               "secret in its argv", len(control.found))
    assert control.found

    # 2. File modes of every state file.
    files = [p for p in (w.root / "state").rglob("*")]
    files += [p for p in w.root.iterdir() if p.name.startswith("saveconfig")]
    for loose in loose_modes(files, scan.secrets.values()):
        expose(f"file mode: {loose}")
    planted = tmp_path / "planted-secret"
    planted.write_text(known["chap secret"])
    planted.chmod(0o644)
    reliability_report.control(f"secrets leaked (file modes, {backend})", "a 0644 file "
                               "holding the CHAP secret", len(loose_modes([planted],
                                                                          known.values())))
    assert loose_modes([planted], known.values())
    fig.notes.append("state files: " + ", ".join(
        f"{p.relative_to(w.root)} {p.stat().st_mode & 0o777:04o}" for p in files if p.is_file()))

    # 3. The confused deputy, and an unknown id.
    url = api_url(w)
    other = f"other-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=other)
    treasure = f"treasure-{secrets.token_hex(8)}"
    t_etag = s3_client.put_object(Bucket=other, Key="secret",
                                  Body=treasure.encode())["ETag"].strip('"')
    deputy = upload_ims_image("deputy", label=False)
    _rewrite(deputy, s3_client, s3_bucket, ims_server,
             lambda d: _link(d, BOOT, f"s3://{other}/secret", t_etag))
    proxy.reset_counts()
    status, body = http(f"{url}/v1/bootparams/{deputy.ims_id}")
    if status != 404 or treasure.encode() in body:
        expose(f"GET /v1/bootparams of a record not in the catalog: {status} "
               f"{body[:160]!r}")
    if proxy.requests():  # no pass runs meanwhile (the interval is an hour)
        expose(f"GET /v1/bootparams of an unknown record made S3 requests: "
               f"{[s.path for s in proxy.requests()][:4]}")
    status, body = http(f"{url}/v1/bootparams/no-such-image")
    if status != 404 or ims_server.url.encode() in body:
        expose(f"GET /v1/bootparams/no-such-image: {status} {body[:160]!r}")

    # 4. The foreign bucket.
    foreign = upload_ims_image("foreign", label=True)
    key = foreign.rootfs_url.split("/", 3)[3]
    s3_client.copy_object(Bucket=other, Key=key, CopySource={"Bucket": s3_bucket, "Key": key})
    f_etag = s3_client.head_object(Bucket=other, Key=key)["ETag"].strip('"')
    _rewrite(foreign, s3_client, s3_bucket, ims_server,
             lambda d: _link(d, ROOTFS, f"s3://{other}/{key}", f_etag))
    run_pass(w)
    run_pass(w)
    if identity.rootfs(f"s3://{other}/{key}", f_etag).serial in exports():
        expose(f"a rootfs in bucket {other} (not s3.bucket) was exported")
    problems = {p.get("code") for p in run_pass(w).get("problems", []) if isinstance(p, dict)}
    fig.notes.append(f"foreign bucket: problem codes {sorted(map(str, problems))}")

    # 5. Headers.
    port = int(url.rsplit(":", 1)[1])
    status_ = raw_status(port, b"GET /debug/state HTTP/1.1\r\nHost: x\r\nAuthorization: "
                               b"Bearer \xff\xfe\xc3\x28\r\nConnection: close\r\n\r\n")
    if status_ != 401:
        broken(f"non-UTF-8 Authorization header: {status_} (401 wanted)")
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 << 10) + b"\r\n\r\n"
    status_ = raw_status(port, big)
    if status_ is not None and not 400 <= status_ < 500:
        broken(f"a 256 KiB header: {status_} (4xx or refused wanted)")
    fig.inputs += 2

    # 6. The notify endpoint.
    statuses: dict[int, int] = {}
    conn = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = time.monotonic()
    for n in range(3000):
        try:
            conn.request("POST", f"/v1/notify/guess-{n}", body=b"{}")
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        except (OSError, http_client.HTTPException):
            statuses[0] = statuses.get(0, 0) + 1
            conn.close()
            conn = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.close()
    fig.inputs += 3000
    fig.notes.append(f"3,000 wrong notify secrets in {time.monotonic() - t0:.1f} s: "
                     f"statuses {dict(sorted(statuses.items()))}")
    _, metrics = http(f"{url}/metrics")
    counted = [line for line in metrics.decode().splitlines()
               if line.startswith("sbps_notify_rejected_total") and not line.endswith(" 0.0")]
    if not statuses.get(429) or not counted:
        expose("wrong notify secrets are neither throttled (429) nor counted "
               "(sbps_notify_rejected_total)")
    if any(s >= 500 for s in statuses):
        broken("the notify endpoint answered 5xx")

    # 7. A second instance.
    before = (exports(), _srv(knot_server))
    assert before[1], "the first instance registered its DNS records"
    proc = subprocess.Popen(w.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env())
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [line for line in out.splitlines() if line.strip()]
    fig.notes.append(f"second instance: exit {proc.returncode}, {len(lines)} line(s): "
                     f"{(lines or [''])[0][:160]}")
    if proc.returncode != 1 or len(lines) > 2:
        broken("a second instance did not exit 1 with one line")
    time.sleep(1)
    after = (exports(), _srv(knot_server))
    if after != before:
        expose(f"a second instance changed the first's exports or DNS: {before} -> {after}")

    count_crashes(w, fig)
    fig.runs += 1
    assert w.stop() == 0
    assert fig.losses == 0, fig.notes
