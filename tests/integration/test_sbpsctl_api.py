"""sbpsctl commands against the real HTTP API on 127.0.0.1 (over a reconciler test double)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sbps.cli import main
from tests.fixtures.http_api import ApiServer, make_status, pe, rootfs, start_api

A, B, C, D = rootfs("aaaa-1"), rootfs("bbbb-2"), pe("CPE-base"), rootfs("dddd-4")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_api(make_status([(A, 11), (B, 12), (C, 13)], retiring=[(D, 14)]),
                             tmp_path / "state")
    yield server
    await server.close()


def config_for(api: ApiServer) -> str:
    path = api.state_dir.parent / "marshal.toml"
    path.write_text(f'[reconcile]\nstate_dir = "{api.state_dir}"\n')
    return str(path)


async def sbpsctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run sbpsctl in a thread: it is synchronous and the server shares this loop."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_images_and_status_find_the_daemon_from_the_configuration(
        api: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_for(api)
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "images")
    assert code == 0
    assert A.identity.name in out and "retiring" in out and "CPE-base" in out
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "images", "--json")
    assert {i["lun_id"] for i in json.loads(out)["images"]} == {11, 12, 13, 14}
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "status")
    assert code == 0
    assert "ready      yes" in out and "4 LUNs" in out and "3 exported, 1 retiring" in out
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "status", "--json")
    assert json.loads(out)["passes"] == 1


async def test_plan_reconcile_and_image_actions(api: ApiServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_for(api)
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "plan")
    assert code == 0 and "CreateLun" in out and "export img" in out
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "reconcile")
    assert code == 0 and out.strip() == "pass 2 requested"
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "reconcile", "--wait")
    assert code == 0 and "finished: ok" in out
    code, out, _ = await sbpsctl(capsys, "--config", cfg, "image", "hold", D.identity.name)
    assert code == 0 and "hold done (held: yes)" in out
    assert api.control.levers().held == {D.identity.name}
    code, _, err = await sbpsctl(capsys, "--config", cfg, "image", "retire-now",
                                 A.identity.name)
    assert code == 1 and "409 conflict" in err


async def test_wrong_token_is_refused(api: ApiServer, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    code, _, err = await sbpsctl(capsys, "plan", "--url", api.url, "--token-file", str(wrong))
    assert code == 1 and "401 unauthorized" in err
    assert api.control.reasons == []


async def test_peers_check_agreement(api: ApiServer, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    twin = await start_api(make_status([(A, 11), (B, 12), (C, 13)], retiring=[(D, 14)]),
                           tmp_path / "twin")
    try:
        code, out, _ = await sbpsctl(capsys, "peers", "check", api.url, twin.url)
        assert code == 0 and "2 workers agree" in out
    finally:
        await twin.close()


async def test_peers_check_finds_planted_disagreements(
        api: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The other worker put A on LUN 21, lacks B, and runs tgt; a rebuilt PE on LUN 13.
    other = await start_api(make_status([(A, 21), (C, 13), (D, 12)], backend="tgt"),
                            tmp_path / "other")
    try:
        code, out, _ = await sbpsctl(capsys, "peers", "check", "--json", api.url, other.url)
        assert code == 1
        found = {(d["kind"], d["key"]) for d in json.loads(out)["disagreements"]}
        assert ("backend", "-") in found
        assert ("lun_id", A.identity.name) in found
        assert ("missing", B.identity.name) in found
        assert ("lun_id", D.identity.name) in found
        assert ("lun_conflict", "lun 12") in found
        assert not any(key == C.identity.name for _, key in found)
        code, out, _ = await sbpsctl(capsys, "peers", "check", api.url, other.url)
        assert code == 1 and "the fleet mixes target backends" in out
    finally:
        await other.close()


async def test_peers_check_reports_an_unreachable_worker(
        api: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await sbpsctl(capsys, "peers", "check", "--timeout", "5", api.url,
                                 "http://127.0.0.1:9")
    assert code == 1 and "unreachable" in out and "cannot reach the daemon" in out
