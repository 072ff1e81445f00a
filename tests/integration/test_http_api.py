"""The HTTP API on a real socket on 127.0.0.1, over a reconciler test double's snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from sbps import __version__
from sbps.cli._api import Api
from sbps.config import HttpConfig
from sbps.core.errors import ConfigError
from sbps.core.model import ImageState
from sbps.core.target_state import LunStats
from sbps.publish.http.app import make_app
from sbps.publish.http.auth import load_or_create_token
from sbps.publish.http.deps import DEPS
from sbps.publish.http.serve import start_http, tls_context
from sbps.reconcile.commands import Levers
from sbps.reconcile.lifecycle import ImageStatus
from tests.fixtures.http_api import (
    IQN,
    ApiServer,
    make_status,
    pe,
    rootfs,
    start_api,
)

A, B, C, D, E, F = (rootfs("aaaa-1"), rootfs("bbbb-2"), pe("CPE-base.x86_64-24.11"),
                    rootfs("dddd-4"), rootfs("eeee-5"), rootfs("ffff-6"))


def base_status():  # type: ignore[no-untyped-def]
    return make_status([(A, 11), (B, 12), (C, 13)], retiring=[(D, 14)], failed=[E],
                       staging=[F], read_bytes=3 * 2**20, commands=100)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_api(base_status(), tmp_path / "state")
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(api: ApiServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


async def test_catalog_lists_exported_retiring_and_failed(api: ApiServer,
                                                          http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/images") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["iqn"] == IQN
    assert doc["portals"] == ["10.252.1.10:3260", "10.253.1.10:3260"]
    by_key = {e["key"]: e for e in doc["images"]}
    assert set(by_key) == {i.identity.name for i in (A, B, C, D, E)}  # staging F is not listed
    a = by_key[A.identity.name]
    assert a == {
        "key": A.identity.name, "identity_key": A.identity.key, "ims_id": "aaaa-1",
        "name": "img-aaaa-1", "kind": "rootfs", "arch": "x86_64",
        "s3_path": "s3://boot-images/aaaa-1/rootfs", "etag": A.source.etag, "size": 4096,
        "serial": A.identity.serial, "wwid": "36001405" + A.identity.serial[:25],
        "lun_id": 11, "state": "exported", "since": "2023-11-14T22:13:20Z", "reason": None}
    c = by_key[C.identity.name]
    assert c["ims_id"] is None and c["kind"] == "pe" and c["lun_id"] == 13
    assert c["key"] == "de4cc04e7dacfb9" and c["wwid"] == "36001405de4cc04e7dacfb9ada0a6b4cc"
    assert by_key[D.identity.name]["state"] == "retiring"
    failed = by_key[E.identity.name]
    assert failed["state"] == "failed" and failed["reason"].startswith("verification_failed")


async def test_catalog_entry_by_ims_id_or_key(api: ApiServer,
                                              http: aiohttp.ClientSession) -> None:
    for ident in ("bbbb-2", B.identity.name):
        async with http.get(f"{api.url}/v1/images/{ident}") as r:
            assert r.status == 200
            doc = await r.json()
        assert [e["key"] for e in doc["images"]] == [B.identity.name]
    async with http.get(f"{api.url}/v1/images/no-such-image") as r:
        assert r.status == 404
        assert (await r.json())["error"] == {
            "code": "not_found", "field": "id",
            "message": "no image with key or IMS id 'no-such-image' in the catalog"}


async def test_retiring_image_without_record_falls_back_to_the_backstore(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    status = base_status()
    orphan = ImageStatus(D.identity.name, ImageState.RETIRING, 1.0, "no longer desired",
                         lun_id=14)
    status = replace(status, images=tuple(s for s in status.images
                                          if s.name != D.identity.name) + (orphan,))
    server = await start_api(status, tmp_path / "state")
    try:
        async with http.get(f"{server.url}/v1/images/{D.identity.name}") as r:
            entry = (await r.json())["images"][0]
        assert entry["ims_id"] is None and entry["name"] is None
        assert entry["serial"] == D.identity.serial and entry["size"] == D.source.size
    finally:
        await server.close()


async def test_etag_and_304(api: ApiServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/images") as r:
        etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    for header in (etag, f"W/{etag}", f'"other", {etag}'):
        async with http.get(f"{api.url}/v1/images", headers={"If-None-Match": header}) as r:
            assert r.status == 304
            assert r.headers["ETag"] == etag
    # A pass that changes nothing in the catalog keeps the ETag.
    api.control.set_status(replace(api.control.status, passes=2, last_pass_at=2e9))
    async with http.get(f"{api.url}/v1/images", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    api.control.set_status(make_status([(A, 11)]))
    async with http.get(f"{api.url}/v1/images", headers={"If-None-Match": etag}) as r:
        assert r.status == 200
        assert r.headers["ETag"] != etag
        assert len((await r.json())["images"]) == 1


async def test_long_poll_returns_when_the_catalog_changes(api: ApiServer,
                                                          http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/images") as r:
        etag = r.headers["ETag"]

    async def poll() -> tuple[int, dict[str, object]]:
        async with http.get(f"{api.url}/v1/images?wait=120",
                            headers={"If-None-Match": etag}) as r:
            return r.status, await r.json()

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.2)
    assert not task.done()
    # A pass without a catalog change does not end the poll.
    api.control.set_status(replace(api.control.status, passes=5))
    await asyncio.sleep(0.1)
    assert not task.done()
    api.control.set_status(make_status([(A, 11), (B, 12)], passes=6))
    status, doc = await asyncio.wait_for(task, 30)
    assert status == 200
    assert len(doc["images"]) == 2  # type: ignore[arg-type]


async def test_long_poll_times_out_with_304(api: ApiServer,
                                           http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/images") as r:
        etag = r.headers["ETag"]
    async with http.get(f"{api.url}/v1/images?wait=0.3",
                        headers={"If-None-Match": etag}) as r:
        assert r.status == 304


@pytest.mark.parametrize(("query", "headers", "field"), [
    ("wait=10", {}, "If-None-Match"),
    ("wait=10", {"If-None-Match": "*"}, "If-None-Match"),
    ("wait=301", {"If-None-Match": '"x"'}, "wait"),
    ("wait=soon", {"If-None-Match": '"x"'}, "wait"),
])
async def test_long_poll_parameters_are_checked(api: ApiServer, http: aiohttp.ClientSession,
                                                query: str, headers: dict[str, str],
                                                field: str) -> None:
    async with http.get(f"{api.url}/v1/images?{query}", headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["field"] == field


async def test_target_lun_table(api: ApiServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/target") as r:
        doc = await r.json()
    assert doc["iqn"] == IQN and doc["backend"] == "lio" and doc["tpg_enabled"]
    assert doc["version"] == __version__
    assert doc["gate_open"] and doc["serving"]
    assert [(lun["lun_id"], lun["key"]) for lun in doc["luns"]] == [
        (11, A.identity.name), (12, B.identity.name), (13, C.identity.name),
        (14, D.identity.name)]
    assert doc["luns"][0]["serial"] == A.identity.serial and doc["luns"][0]["size"] == 4096
    # Desired images not exported yet, with their state (their LUN ids stay claimed).
    states = {p["key"]: (p["state"], p["reason"]) for p in doc["pending"]}
    assert ("failed", "verification_failed: md5 mismatch") in states.values()
    assert "staging" in {state for state, _ in states.values()}
    assert not set(states) & {lun["key"] for lun in doc["luns"]}


async def test_health_and_readiness(api: ApiServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/healthz") as r:
        assert r.status == 200 and (await r.json())["version"] == __version__
    async with http.get(f"{api.url}/readyz") as r:
        assert r.status == 200 and (await r.json()) == {"ready": True, "reasons": []}
    api.control.set_status(replace(api.control.status, gate_open=False))
    async with http.get(f"{api.url}/readyz") as r:
        assert r.status == 503
        assert (await r.json())["reasons"] == ["the node gate is closed"]


async def test_bootparams_come_from_the_snapshot(api: ApiServer,
                                                 http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/v1/bootparams/aaaa-1?network=nmn") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["network"] == "nmn" and doc["ims_id"] == "aaaa-1"
    assert doc["root"] == (f"root=sbps-s3:s3://boot-images/aaaa-1/rootfs:{A.source.etag}:"
                           "sbps:v1:iqn.2023-06.csm.iscsi:_sbps-nmn._tcp.sys.site.example:300")
    assert doc["serial"] == A.identity.serial and doc["cmdline"] == doc["root"]
    async with http.get(f"{api.url}/v1/bootparams/aaaa-1?network=wan") as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "network"
    # Not in the catalog: staging (F), a PE image (C), an unknown id.
    for ims_id in ("ffff-6", C.identity.name, "missing"):
        async with http.get(f"{api.url}/v1/bootparams/{ims_id}") as r:
            assert r.status == 404 and (await r.json())["error"]["field"] == "ims_id"


ADMIN = [("GET", "/debug/state"), ("GET", "/debug/plan"), ("GET", "/debug/config"),
         ("GET", "/debug/tasks"), ("PUT", "/debug/loglevel"), ("POST", "/v1/reconcile"),
         ("POST", f"/v1/images/{A.identity.name}/hold")]


@pytest.mark.parametrize(("method", "path"), ADMIN)
async def test_admin_endpoints_require_the_token(api: ApiServer, http: aiohttp.ClientSession,
                                                 method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": f"Basic {api.token}"}):
        async with http.request(method, f"{api.url}{path}", headers=headers,
                                json={"level": "info"}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"]["code"] == "unauthorized"
    assert api.control.reasons == []  # nothing was triggered without the token
    assert api.control.levers().held == frozenset()


async def test_token_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    cfg = HttpConfig()
    token = load_or_create_token(cfg, str(tmp_path / "state"))
    path = tmp_path / "state" / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token and len(token) >= 32
    assert load_or_create_token(cfg, str(tmp_path / "state")) == token
    assert [p.name for p in path.parent.iterdir()] == ["admin-token"]
    path.chmod(0o644)  # loosened by someone: the daemon's own file is set back to 0600
    assert load_or_create_token(cfg, str(tmp_path / "state")) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_configured_token_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_or_create_token(HttpConfig(admin_token_file=str(tmp_path / "nope")),
                             str(tmp_path))
    assert err.value.key == "http.admin_token_file"
    (tmp_path / "tok").write_text("s3cret-token\n")
    assert load_or_create_token(HttpConfig(admin_token_file=str(tmp_path / "tok")),
                                str(tmp_path)) == "s3cret-token"


async def test_debug_endpoints(api: ApiServer, http: aiohttp.ClientSession) -> None:
    api.control.hold(A.identity.name)
    async with http.get(f"{api.url}/debug/state", headers=auth(api)) as r:
        state = await r.json()
    assert state["held"] == [A.identity.name] and state["claims"] == {"ab" * 28: 7}
    assert len(state["desired"]) == 6 and state["actual"]["iqn"] == IQN
    assert state["last_report"]["results"][0]["kind"] == "CreateLun"
    async with http.get(f"{api.url}/debug/plan", headers=auth(api)) as r:
        plan = await r.json()
    assert plan["actions"][0]["kind"] == "CreateLun" and plan["actions"][0]["lun"]["index"] == 3
    async with http.get(f"{api.url}/debug/config", headers=auth(api)) as r:
        assert (await r.json()) == {"http": {"bind": "127.0.0.1"}}
    async with http.get(f"{api.url}/debug/tasks", headers=auth(api)) as r:
        assert (await r.json())["tasks"] == [{"name": "reconciler", "state": "running"}]


async def test_loglevel(api: ApiServer, http: aiohttp.ClientSession) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        async with http.put(f"{api.url}/debug/loglevel", headers=auth(api),
                            json={"level": "error"}) as r:
            assert r.status == 200
        assert root.level == logging.ERROR
        async with http.put(f"{api.url}/debug/loglevel", headers=auth(api),
                            json={"level": "chatty"}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "level"
        async with http.put(f"{api.url}/debug/loglevel", headers=auth(api),
                            data=b"not json") as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "body"
    finally:
        root.setLevel(before)


async def test_reconcile_trigger_and_wait(api: ApiServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.url}/v1/reconcile", headers=auth(api)) as r:
        assert r.status == 202
        assert (await r.json()) == {"pass": 2, "finished": False}
    async with http.post(f"{api.url}/v1/reconcile?wait=1", headers=auth(api)) as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["finished"] and doc["pass"] >= 3 and doc["ok"]
    assert doc["report"]["results"][0]["kind"] == "CreateLun"
    assert len(api.control.reasons) == 2


async def test_hold_release_retire_now(api: ApiServer, http: aiohttp.ClientSession) -> None:
    control = api.control
    url = f"{api.url}/v1/images"
    async with http.post(f"{url}/{D.identity.name}/hold", headers=auth(api)) as r:
        assert r.status == 202 and (await r.json())["held"] is True
    assert control.levers().held == {D.identity.name}
    async with http.post(f"{url}/{D.identity.name}/retire-now", headers=auth(api)) as r:
        assert r.status == 409  # held
    async with http.post(f"{url}/{D.identity.name}/release", headers=auth(api)) as r:
        assert r.status == 202 and (await r.json())["held"] is False
    async with http.post(f"{url}/{A.identity.name}/retire-now", headers=auth(api)) as r:
        assert r.status == 409  # exported, not retiring
        assert "not retiring" in (await r.json())["error"]["message"]
    async with http.post(f"{url}/{D.identity.name}/retire-now", headers=auth(api)) as r:
        assert r.status == 202 and (await r.json())["forced"] is True
    assert control.levers() == Levers(held=frozenset(), forced=frozenset({D.identity.name}))
    async with http.post(f"{url}/0123456789abcde/hold", headers=auth(api)) as r:
        assert r.status == 404
    async with http.post(f"{url}/NOT-A-KEY/hold", headers=auth(api)) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "key"
    async with http.post(f"{url}/{A.identity.name}/explode", headers=auth(api)) as r:
        assert r.status == 404


async def test_metrics_follow_the_snapshot(api: ApiServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    a = f'ims_id="aaaa-1",key="{A.identity.name}",lun="11"'
    c = f'ims_id="",key="{C.identity.name}",lun="13"'
    lines = text.splitlines()
    assert f"iscsi_read_mbytes{{{a}}} 3.0" in lines
    assert f"iscsi_read_mbytes{{{c}}} 9.0" in lines
    assert "iscsi_rootfs_lun_cnt 3.0" in lines and "iscsi_pe_lun_cnt 1.0" in lines
    assert 'sbps_images{state="failed"} 1.0' in lines
    assert not any(line.startswith("iscsi_read_rate{") for line in lines)
    # The next reading (the next scrape): LUN 11 read 7 MiB more and 500 more commands in
    # 10 s; a pass in between.
    st = api.control.status
    stats = dict(st.stats)
    stats[11] = LunStats(11, 10 * 2**20, 600)
    assert st.last_pass_at is not None and st.stats_at is not None
    api.control.set_status(replace(st, passes=2, last_pass_at=st.last_pass_at + 5,
                                   stats=stats, stats_at=st.stats_at + 10))
    async with http.get(f"{api.url}/metrics") as r:
        lines = (await r.text()).splitlines()
    assert f"iscsi_read_mbytes{{{a}}} 10.0" in lines
    assert f"iscsi_read_rate{{{a}}} 50.0" in lines
    assert f"iscsi_read_rate{{{c}}} 0.0" in lines
    assert 'sbps_reconcile_runs_total{result="success"} 2.0' in lines
    assert 'sbps_actions_total{kind="CreateLun",result="ok"} 2.0' in lines
    assert api.control.counter_reads == 2  # each scrape asked for the counters of now


async def test_metrics_openmetrics_by_negotiation(api: ApiServer,
                                                  http: aiohttp.ClientSession) -> None:
    accept = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    async with http.get(f"{api.url}/metrics", headers={"Accept": accept}) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await r.text()
    assert text.rstrip().endswith("# EOF")
    assert "# TYPE iscsi_read_mbytes gauge" in text


async def test_errors_are_json_without_tracebacks(tmp_path: Path,
                                                  http: aiohttp.ClientSession) -> None:
    server = await start_api(base_status(), tmp_path / "state")

    async def explode() -> None:
        raise RuntimeError("private detail /etc/shadow")

    server.control.dry_run = explode  # type: ignore[method-assign,assignment]
    try:
        async with http.get(f"{server.url}/debug/plan", headers=auth(server)) as r:
            assert r.status == 500
            body = await r.text()
        assert "Traceback" not in body and "private detail" not in body
        assert (await r.json())["error"]["code"] == "internal"
        async with http.get(f"{server.url}/nothing/here") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with http.delete(f"{server.url}/v1/images") as r:
            assert r.status == 405
            assert (await r.json())["error"]["code"] == "method_not_allowed"
    finally:
        await server.close()


async def test_url_file_written_for_sbpsctl(api: ApiServer) -> None:
    assert (api.state_dir / "http-url").read_text().strip() == api.url


async def test_follow_wakes_long_polls_after_each_pass(api: ApiServer,
                                                      http: aiohttp.ClientSession) -> None:
    api.control.source = None  # only follow() notifies now, as in the daemon
    follower = asyncio.create_task(api.source.follow(api.control))
    try:
        async with http.get(f"{api.url}/v1/images") as r:
            etag = r.headers["ETag"]
        poll = asyncio.create_task(http.get(f"{api.url}/v1/images?wait=120",
                                            headers={"If-None-Match": etag}))
        await asyncio.sleep(0.2)
        api.control.set_status(make_status([(A, 11)], passes=2))
        r = await asyncio.wait_for(poll, 30)
        assert r.status == 200 and len((await r.json())["images"]) == 1
        r.release()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    proc = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert), stderr=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0
    cfg = HttpConfig(bind="127.0.0.1", port=0, tls_cert_file=str(cert),
                     tls_key_file=str(key))
    server = await start_api(base_status(), tmp_path / "state")
    runner, port = await start_http(cfg, make_app(replace_deps(server)), None)
    try:
        client = Api(f"https://127.0.0.1:{port}", None, 10, str(cert))
        status, doc = await asyncio.to_thread(client.call, "GET", "/v1/target")
        assert status == 200 and doc["iqn"] == IQN
    finally:
        await runner.cleanup()
        await server.close()
    with pytest.raises(ConfigError) as err:
        tls_context(HttpConfig(tls_cert_file=str(cert)))
    assert err.value.key == "http.tls_key_file"


def replace_deps(server: ApiServer):  # type: ignore[no-untyped-def]
    return server.runner.app[DEPS]
