"""``sbpsctl bootparams IMAGE_ID`` against the real moto S3 server and a tiny IMS endpoint.

The IMS endpoint is a minimal aiohttp app started here on 127.0.0.1:0 (only the one GET
the command makes, with a bearer-token check); the development IMS server will replace it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sbps.cli import main
from sbps.core import identity
from sbps.core.model import ArtifactType
from sbps.publish.boot import params as bootparams
from tests.fixtures.servers import S3Server

TOKEN = "test-token-0123"
ROOTFS_BODY = b"hsqs" + bytes(range(256)) * 64
BOOT_PARAMETERS = "console=ttyS0,115200 ip=dhcp quiet\n"

IMAGES = web.AppKey("images", dict[str, Any])


async def _get_image(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.json_response({"detail": "unauthorized"}, status=401)
    record = request.app[IMAGES].get(request.match_info["id"])
    if record is None:
        return web.json_response({"detail": "not found"}, status=404)
    return web.json_response(record)


@pytest.fixture
async def ims() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    app = web.Application()
    app[IMAGES] = {}
    app.router.add_get("/apis/ims/v3/images/{id}", _get_image)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", app[IMAGES]
    finally:
        await runner.cleanup()


@pytest.fixture
def image(s3_client: Any, s3_bucket: str, ims: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An image laid out as IMS does: rootfs, boot parameters and manifest.json in S3."""
    ims_id = str(uuid.uuid4())

    def put(name: str, body: bytes) -> tuple[str, str]:
        r = s3_client.put_object(Bucket=s3_bucket, Key=f"{ims_id}/{name}", Body=body)
        return f"s3://{s3_bucket}/{ims_id}/{name}", str(r["ETag"]).strip('"')

    rootfs = put("rootfs", ROOTFS_BODY)
    params = put("boot_parameters", BOOT_PARAMETERS.encode())
    manifest = {"version": "1.0", "created": "2026-11-25 10:00:00", "artifacts": [
        {"link": {"path": rootfs[0], "etag": rootfs[1], "type": "s3"},
         "md5": hashlib.md5(ROOTFS_BODY).hexdigest(), "type": ArtifactType.ROOTFS.value},
        {"link": {"path": params[0], "etag": params[1], "type": "s3"},
         "md5": "", "type": ArtifactType.BOOT_PARAMETERS.value}]}
    man = put("manifest.json", json.dumps(manifest).encode())
    ims[1][ims_id] = {"id": ims_id, "name": "compute-image", "arch": "x86_64",
                      "created": "2026-11-25T10:00:00+00:00",
                      "link": {"path": man[0], "etag": man[1], "type": "s3"},
                      "metadata": [{"key": "sbps-project", "value": "true"}]}
    return {"id": ims_id, "rootfs": rootfs, "manifest": man}


@pytest.fixture
def config(tmp_path: Path, s3_server: S3Server, s3_bucket: str, s3_credential_file: Path,
           ims: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SBPS_MARSHAL_"):
            monkeypatch.delenv(name)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    path = tmp_path / "marshal.toml"
    path.write_text(
        f'[node]\nsystem_name = "my-system"\nsite_domain = "example.com"\n'
        f'[catalog]\napi_gateway = "{ims[0]}"\nauth = "token-file"\n'
        f'token_file = "{token}"\ntimeout = 5\n'
        f'[s3]\nendpoint = "{s3_server.endpoint}"\nbucket = "{s3_bucket}"\n'
        f'credential_file = "{s3_credential_file}"\n')
    return path


async def _sbpsctl(*argv: str) -> int:
    # main() runs its own event loop, so it runs in a thread while this loop serves IMS.
    return await asyncio.to_thread(main, list(argv))


async def test_cmdline_is_the_artifact_followed_by_root(
        config: Path, image: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 0
    line = capsys.readouterr().out.strip()
    root = (f"root=sbps-s3:{image['rootfs'][0]}:{image['rootfs'][1]}:sbps:v1:"
            "iqn.2023-06.csm.iscsi:_sbps-hsn._tcp.my-system.example.com:300")
    assert line == f"console=ttyS0,115200 ip=dhcp quiet {root}"


async def test_json_has_the_expected_identity(
        config: Path, image: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = await _sbpsctl("--config", str(config), "bootparams", image["id"], "--network",
                          "nmn", "--system", "other", "--domain", "site.example",
                          "--timeout", "120", "--ramroot", "--json")
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    ident = identity.rootfs(*image["rootfs"])
    assert (body["serial"], body["wwid"]) == (ident.serial, ident.wwid)
    assert body["srv_name"] == "_sbps-nmn._tcp.other.site.example"
    assert body["root"].endswith(":120:1")
    assert bootparams.parse(body["root"]).wwid == ident.wwid
    assert body["image"]["manifest_etag"] == image["manifest"][1]


async def test_bos_and_bootprep(config: Path, image: dict[str, Any],
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"],
                          "--format", "bos") == 0
    boot_set = json.loads(capsys.readouterr().out)["boot_sets"]["compute"]
    assert (boot_set["path"], boot_set["etag"]) == image["manifest"]
    assert boot_set["rootfs_provider"] == "sbps"
    assert boot_set["rootfs_provider_passthrough"] == (
        "sbps:v1:iqn.2023-06.csm.iscsi:_sbps-hsn._tcp.my-system.example.com:300")
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"],
                          "--format", "bootprep", "--configuration", "cfg") == 0
    out = capsys.readouterr().out
    assert f'      id: "{image["id"]}"' in out
    assert '  configuration: "cfg"' in out


async def test_unknown_image_and_bad_token_exit_1(
        config: Path, image: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(uuid.uuid4())
    assert await _sbpsctl("--config", str(config), "bootparams", missing) == 1
    assert "HTTP 404" in capsys.readouterr().err
    (tmp_path / "token").write_text("wrong\n")
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "catalog.auth" in err and "wrong" not in err


async def test_manifest_without_rootfs_etag_is_refused_by_field(
        config: Path, image: dict[str, Any], s3_client: Any, s3_bucket: str,
        ims: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    manifest = {"version": "1.0", "artifacts": [
        {"link": {"path": image["rootfs"][0], "etag": None, "type": "s3"},
         "type": ArtifactType.ROOTFS.value}]}
    r = s3_client.put_object(Bucket=s3_bucket, Key=f"{image['id']}/manifest.json",
                             Body=json.dumps(manifest).encode())
    ims[1][image["id"]]["link"]["etag"] = str(r["ETag"]).strip('"')
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 1
    assert "link.etag" in capsys.readouterr().err


async def test_a_foreign_boot_link_is_refused_unless_the_bucket_is_allowed(
        config: Path, image: dict[str, Any], s3_client: Any, s3_bucket: str,
        ims: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    """The confused deputy through sbpsctl (issue 20, item 2): a manifest whose
    boot-parameters link names another bucket is refused with foreign_bucket, its content
    never printed; naming the bucket in s3.allowed_buckets (the control) lets it through."""
    other = f"other-bucket-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=other)
    secret = s3_client.put_object(Bucket=other, Key="secret", Body=b"SECRET-CONTENT")
    manifest = {"version": "1.0", "artifacts": [
        {"link": {"path": image["rootfs"][0], "etag": image["rootfs"][1], "type": "s3"},
         "type": ArtifactType.ROOTFS.value},
        {"link": {"path": f"s3://{other}/secret", "etag": str(secret["ETag"]).strip('"'),
                  "type": "s3"}, "type": ArtifactType.BOOT_PARAMETERS.value}]}
    r = s3_client.put_object(Bucket=s3_bucket, Key=f"{image['id']}/manifest.json",
                             Body=json.dumps(manifest).encode())
    ims[1][image["id"]]["link"]["etag"] = str(r["ETag"]).strip('"')
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 1
    out, err = capsys.readouterr()
    assert "SECRET-CONTENT" not in out + err
    assert "manifest.artifacts[boot_parameters].link.path" in err and other in err
    config.write_text(config.read_text() + f'allowed_buckets = ["{other}"]\n')
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 0
    assert capsys.readouterr().out.startswith("SECRET-CONTENT root=sbps-s3:")


async def test_a_foreign_manifest_link_is_refused(
        config: Path, image: dict[str, Any], ims: tuple[str, dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    ims[1][image["id"]]["link"]["path"] = "s3://other-bucket/any/manifest.json"
    assert await _sbpsctl("--config", str(config), "bootparams", image["id"]) == 1
    err = capsys.readouterr().err
    assert "link.path" in err and "s3.allowed_buckets" in err
