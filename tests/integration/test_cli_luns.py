"""``sbpsctl luns`` against the real moto server and a worker's state directory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sbps.cli import main
from sbps.config import load
from sbps.core.identity import from_key
from sbps.core.model import DesiredImage, ImageKind, ImageState, ObjectInfo, S3Url
from sbps.core.target_state import TargetState
from sbps.reconcile.lifecycle import ImageStatus
from sbps.reconcile.status import Status
from sbps.sources.claims import ClaimRegistry, Settings, journal_path
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.http_api import start_api
from tests.fixtures.servers import S3Server

IDENTS = [from_key(f"s3://boot-images/img{n}/rootfs|etag{n}") for n in range(3)]


@pytest.fixture
def config(tmp_path: Path, s3_server: S3Server, s3_credential_file: Path,
           s3_bucket: str) -> Path:
    path = tmp_path / "marshal.toml"
    path.write_text(f"""
[node]
hostname = "w1"
[s3]
endpoint = "{s3_server.endpoint}"
credential_file = "{s3_credential_file}"
bucket = "{s3_bucket}"
[target]
lun_max = 16
[reconcile]
state_dir = "{tmp_path / 'state'}"
""")
    return path


def worker(config: Path, host: str) -> ClaimRegistry:
    cfg = load(str(config)).config
    s3 = S3(cfg.s3, read_credentials(cfg.s3.credential_file))
    state = Path(cfg.reconcile.state_dir) if host == "w1" else config.parent / host
    return ClaimRegistry(s3, cfg.s3.bucket, host, Settings.from_config(cfg.target),
                         journal_path(state))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_list_verify_release(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w1, w2 = worker(config, "w1"), worker(config, "w2")
    mine = w1.claim(IDENTS[0])
    theirs = w2.claim(IDENTS[1])
    journal = journal_path(load(str(config)).config.reconcile.state_dir)
    before = journal.read_bytes()

    code, out = run(capsys, "--config", str(config), "luns", "list", "--json")
    rows = {r["lun_id"]: r for r in json.loads(out)["claims"]}
    assert code == 0 and set(rows) == {mine.lun_id, theirs.lun_id}
    assert (rows[mine.lun_id]["journal"], rows[mine.lun_id]["held_here"]) == ("same", True)
    assert (rows[theirs.lun_id]["journal"], rows[theirs.lun_id]["holders"]) == ("absent",
                                                                               ["w2"])
    code, out = run(capsys, "--config", str(config), "luns", "list")
    assert code == 0 and IDENTS[1].key in out
    assert journal.read_bytes() == before  # the daemon's journal is never written

    code, out = run(capsys, "--config", str(config), "luns", "verify", "--json")
    assert (code, json.loads(out)["problems"]) == (0, [])
    exported = config.parent / "exported.json"
    exported.write_text(json.dumps({str(mine.lun_id): IDENTS[2].name}))
    code, out = run(capsys, "--config", str(config), "luns", "verify", "--exported",
                    str(exported), "--json")
    assert code == 1
    assert [p["code"] for p in json.loads(out)["problems"]] == ["claim_mismatch"]

    assert main(["--config", str(config), "luns", "release", str(theirs.lun_id)]) == 1
    assert "held by w2" in capsys.readouterr().err
    code, out = run(capsys, "--config", str(config), "luns", "release",
                    str(theirs.lun_id), "--force", "--json")
    assert code == 0 and json.loads(out)["holders"] == []
    assert w2.refresh(IDENTS[1]).holders == frozenset()  # type: ignore[union-attr]


async def test_verify_lists_pending_images_apart(config: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A claim held for an image the marshal reports as failed (not exported) is pending,
    not a problem; one held for nothing the marshal knows is held_not_exported."""
    w1 = worker(config, "w1")
    failed, orphan = w1.claim(IDENTS[0]), w1.claim(IDENTS[1])
    img = DesiredImage(identity=IDENTS[0], kind=ImageKind.ROOTFS, source=ObjectInfo(
        S3Url("boot-images", "img0/rootfs"), "etag0", 1), name="img0")
    status = Status(iqn="iqn.2023-06.csm.iscsi:w1", backend="lio", passes=1, ready=True,
                    images=(ImageStatus(IDENTS[0].name, ImageState.FAILED, 0.0,
                                        "verification_failed: md5 mismatch", image=img),),
                    target=TargetState("iqn.2023-06.csm.iscsi:w1", exists=True))
    api = await start_api(status, tmp_path / "api")
    try:
        code, out = await asyncio.to_thread(
            run, capsys, "--config", str(config), "luns", "verify", "--url", api.url, "--json")
    finally:
        await api.close()
    doc = json.loads(out)
    assert doc["exported_source"] == "target"
    assert doc["pending"] == {str(failed.lun_id): "failed: verification_failed: md5 mismatch"}
    assert [(p["obj"], p["code"]) for p in doc["problems"]] == [
        (f"LUN {orphan.lun_id}", "held_not_exported")]
    assert code == 1


def test_hash_mode_release_writes_the_journal(config: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = config.read_text().replace("lun_max = 16", 'lun_max = 16\nlun_allocation = "hash"')
    config.write_text(text)
    cfg = load(str(config)).config
    reg = ClaimRegistry(None, cfg.s3.bucket, "w1", Settings.from_config(cfg.target),
                        journal_path(cfg.reconcile.state_dir))
    lun = reg.claim(IDENTS[0]).lun_id
    code, out = run(capsys, "--config", str(config), "luns", "list", "--json")
    assert code == 0 and [r["lun_id"] for r in json.loads(out)["claims"]] == [lun]
    code, _ = run(capsys, "--config", str(config), "luns", "release", str(lun), "--force")
    assert code == 0
    again = ClaimRegistry(None, cfg.s3.bucket, "w1", Settings.from_config(cfg.target),
                          journal_path(cfg.reconcile.state_dir))
    assert again.lookup(IDENTS[0]).holders == frozenset()  # type: ignore[union-attr]
