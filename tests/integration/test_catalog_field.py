"""Under the field agent's variables and catalog.rules = "field", the catalog selects exactly
the field agent's set, on a field-like bucket and IMS (the dev IMS fake and moto).

The bucket holds PE objects nested and not, with ``.SQUASHFS`` and no suffix, and a folder
marker; IMS holds records labelled ``"true"`` and ``"True"``, a record with no ``metadata``
at all, unlabelled ones, and manifests with several rootfs artifacts. The expected set is
computed by the field agent's own expressions (``tests/fixtures/field_agent.py``) from the
same records, manifests and listing; the strict rules must select another set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sbps.config import Config, load
from sbps.sources.catalog import Catalog, ImsClient, make_auth
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures import field_agent
from tests.fixtures.servers import S3Server

ROOTFS = field_agent.ROOTFS
LABEL = {"sbps-project": "true"}


def _put(s3_client: Any, bucket: str, key: str, body: bytes) -> str:
    return str(s3_client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]).strip('"')


def _rootfs_artifact(path: str, etag: Any = "absent") -> dict[str, Any]:
    link: dict[str, Any] = {"path": path, "type": "s3"}
    if etag != "absent":
        link["etag"] = etag
    return {"type": ROOTFS, "link": link, "md5": None}


class FieldSite:
    """A bucket and an IMS record list laid out as a field site has them."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self.s3, self.bucket = s3_client, bucket
        self.records: list[dict[str, Any]] = []
        self.manifests: dict[str, Any] = {}
        for key in ("PE/cpe-base.x86_64-24.11.squashfs", "PE/nvidia/CPE-NVIDIA.SQUASHFS",
                    "PE/amd/rocm/cpe-rocm", "PE/readme.txt"):
            _put(s3_client, bucket, key, f"pe {key}".encode())
        _put(s3_client, bucket, "PE/folder/", b"")

    def rootfs(self, image: str, n: int) -> tuple[str, str]:
        key = f"{image}/rootfs{n}"
        return f"s3://{self.bucket}/{key}", _put(self.s3, self.bucket, key,
                                                 f"rootfs {key}".encode())

    def image(self, name: str, artifacts: list[dict[str, Any]], **record: Any) -> None:
        key = f"{name}/manifest.json"
        body = {"version": "1.0", "created": "2024-01-01T00:00:00", "artifacts": artifacts}
        self.manifests[key] = body
        etag = _put(self.s3, self.bucket, key, json.dumps(body).encode())
        self.records.append({"id": name, "name": name, "arch": "x86_64",
                             "created": "2024-01-01T00:00:00+00:00",
                             "link": {"path": f"s3://{self.bucket}/{key}", "etag": etag,
                                      "type": "s3"}, **record})

    def listing(self) -> dict[str, str]:
        pages = self.s3.get_paginator("list_objects").paginate(Bucket=self.bucket)
        return {o["Key"]: o["ETag"].strip('"') for p in pages for o in p.get("Contents", [])}


@pytest.fixture
def site(s3_client: Any, s3_bucket: str) -> FieldSite:
    s = FieldSite(s3_client, s3_bucket)
    path, etag = s.rootfs("labelled", 1)
    s.image("labelled", [_rootfs_artifact(path, etag)], metadata=LABEL)
    path, etag = s.rootfs("capital", 1)
    s.image("capital", [_rootfs_artifact(path, etag)], metadata={"sbps-project": "True"})
    path, etag = s.rootfs("untagged", 1)
    s.image("untagged", [_rootfs_artifact(path, etag)])  # no metadata key at all
    path, etag = s.rootfs("unlabelled", 1)
    s.image("unlabelled", [_rootfs_artifact(path, etag)], metadata={})
    first, second = s.rootfs("several", 1), s.rootfs("several", 2)
    s.image("several", [_rootfs_artifact(*first), _rootfs_artifact(*second)],
            metadata=LABEL)
    first, second = s.rootfs("first-no-etag", 1), s.rootfs("first-no-etag", 2)
    s.image("first-no-etag", [_rootfs_artifact(first[0]), _rootfs_artifact(*second)],
            metadata=LABEL)
    first, second = s.rootfs("last-null", 1), s.rootfs("last-null", 2)
    s.image("last-null", [_rootfs_artifact(*first), _rootfs_artifact(second[0], None)],
            metadata=LABEL)
    return s


def _config(env: dict[str, str], ims_url: str, endpoint: str, bucket: str) -> Config:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": endpoint,
                          "SBPS_MARSHAL_S3_BUCKET": bucket, **env}).config
    return replace(cfg, catalog=replace(cfg.catalog, api_gateway=ims_url,
                                        ims_uri="v3/images"))


async def _selected(cfg: Config, credentials: Path) -> set[str]:
    client = ImsClient(cfg.catalog, make_auth(cfg.catalog), retries=0, backoff=0.01)
    try:
        catalog = Catalog(cfg, client, S3(cfg.s3, read_credentials(str(credentials))))
        snap = await catalog.scan()
    finally:
        await client.close()
    assert not snap.degraded, snap.degraded
    return {image.identity.key for image in snap.images}


@pytest.mark.parametrize("tagging", [None, "true", "True", "1", "yes", "false"])
async def test_field_rules_select_the_field_agents_set(
        site: FieldSite, ims_server_factory: Any, tmp_path: Path, s3_server: S3Server,
        s3_credential_file: Path, tagging: str | None) -> None:
    records = tmp_path / "records.json"
    records.write_text(json.dumps(site.records))
    ims = ims_server_factory(load=[records])
    env = {"SBPS_MARSHAL_CATALOG_RULES": "field"}
    if tagging is not None:
        env["SBPS_MARSHAL_IMS_TAGGING"] = tagging
    cfg = _config(env, ims.url, s3_server.endpoint, site.bucket)
    expected = field_agent.selection(site.records, site.manifests, site.listing(),
                                     site.bucket, field_agent.tagging(tagging))
    # The layout exercises every difference: these are in the field's set.
    b = f"s3://{site.bucket}"
    assert {f"{b}/PE/nvidia/CPE-NVIDIA.SQUASHFS", f"{b}/PE/amd/rocm/cpe-rocm"} <= expected
    assert any(k.startswith(f"{b}/several/rootfs2|") for k in expected)
    assert any(k.startswith(f"{b}/untagged/rootfs1|") for k in expected)
    assert not any(k.startswith(f"{b}/last-null/") for k in expected)
    assert await _selected(cfg, s3_credential_file) == expected

    strict = _config({k: v for k, v in env.items() if k != "SBPS_MARSHAL_CATALOG_RULES"},
                     ims.url, s3_server.endpoint, site.bucket)
    assert await _selected(strict, s3_credential_file) != expected
