"""Drain, promote and the S3 bucket-notification endpoint of the API (reconciler test double)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.http_api import ApiServer, make_status, rootfs, start_api

SECRET = "n0tify-secret-0123456789"


def sample_status():  # type: ignore[no-untyped-def]
    return make_status([(rootfs("aaaa-1"), 11)])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_api(sample_status(), tmp_path, notify_secret=SECRET)
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_drain_needs_the_token_and_lists_sessions(api: ApiServer,
                                                        http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.url}/v1/drain") as r:
        assert r.status == 401
    headers = {"Authorization": f"Bearer {api.token}"}
    async with http.post(f"{api.url}/v1/drain?wait=1", headers=headers) as r:
        body = await r.json()
    assert r.status == 200
    assert body["drained"] is True and body["serving"] is False
    assert body["sessions"] == ["iqn.2026-01.test:node1"]
    async with http.post(f"{api.url}/v1/drain?on=0", headers=headers) as r:
        assert (await r.json())["drained"] is False


async def test_promote_is_an_admin_action(api: ApiServer, http: aiohttp.ClientSession) -> None:
    key = "0123456789abcdef"[:15]
    async with http.post(f"{api.url}/v1/images/{key}/promote") as r:
        assert r.status == 401
    async with http.post(f"{api.url}/v1/images/{key}/promote",
                         headers={"Authorization": f"Bearer {api.token}"}) as r:
        body = await r.json()
    assert r.status == 202, body
    assert body["etag"] == "newetag" and api.control.promoted == key  # type: ignore[attr-defined]


async def test_notification_schedules_one_pass_per_second(api: ApiServer,
                                                          http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.url}/v1/notify/wrong-secret", data=b"{}") as r:
        assert r.status == 404
    before = len(api.control.reasons)
    answers = []
    for _ in range(5):
        async with http.post(f"{api.url}/v1/notify/{SECRET}",
                             data=b'{"Records": [{"garbage": true}]}') as r:
            assert r.status == 202
            answers.append((await r.json())["scheduled"])
    assert answers[0] is True and answers.count(True) == 1
    assert api.control.reasons[before:] == ["S3 bucket notification"]


async def test_notification_endpoint_is_off_without_a_secret(tmp_path: Path,
                                                             http: aiohttp.ClientSession) -> None:
    server = await start_api(sample_status(), tmp_path)
    try:
        async with http.post(f"{server.url}/v1/notify/anything") as r:
            assert r.status == 404
    finally:
        await server.close()


async def test_catalog_view_of_one_initiator_under_access_control(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    from dataclasses import replace

    red, blue = replace(rootfs("aaaa-1"), tenant="red"), replace(rootfs("bbbb-2"), tenant="blue")
    members = {"red": "iqn.2026-01.test:red1", "blue": "iqn.2026-01.test:blue1"}
    server = await start_api(make_status([(red, 11), (blue, 12)]), tmp_path,
                             allowed=lambda tenant, who: who == members.get(tenant or ""))
    try:
        async def ims_ids(query: str = "", **headers: str) -> set[str]:
            async with http.get(f"{server.url}/v1/images{query}", headers=headers) as r:
                return {i["ims_id"] for i in (await r.json())["images"]}

        assert await ims_ids("?initiator=iqn.2026-01.test:red1") == {"aaaa-1"}
        assert await ims_ids(**{"X-SBPS-Initiator": "iqn.2026-01.test:blue1"}) == {"bbbb-2"}
        assert await ims_ids() == set()
        assert await ims_ids(Authorization=f"Bearer {server.token}") == {"aaaa-1", "bbbb-2"}
        async with http.get(f"{server.url}/v1/images/bbbb-2?initiator="
                            "iqn.2026-01.test:red1") as r:
            assert r.status == 404
    finally:
        await server.close()
