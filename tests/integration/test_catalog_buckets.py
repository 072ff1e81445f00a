"""Bucket confinement of the catalog pass against the dev IMS fake and moto (issue 20,
item 3): a labelled record whose manifest, rootfs or boot artifact lies in another bucket
is a ``foreign_bucket`` problem and is not projected, and nothing in that bucket is read;
with the bucket named in ``s3.allowed_buckets`` (the positive control) it is projected.
The boot-parameters artifact is read with the manifest and cached in the desired image."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sbps.config import load
from sbps.core.model import ArtifactType
from sbps.sources.catalog import Catalog, CatalogSnapshot, ImsClient, make_auth
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.servers import IMSServer, S3Server

LABEL = {"sbps-project": "true"}
SECRET = b"the other tenant's secret kernel parameters"


@pytest.fixture
def proxy(fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server) -> FaultProxy:
    return fault_proxy(s3_server.endpoint)


@pytest.fixture
def other_bucket(s3_client: Any) -> str:
    name = f"other-bucket-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=name)
    return name


class Layout:
    """Objects laid out as IMS does, each artifact in the bucket the test chooses."""

    def __init__(self, s3_client: Any, bucket: str, ims: IMSServer) -> None:
        self.s3, self.bucket, self.ims = s3_client, bucket, ims

    def put(self, bucket: str, key: str, body: bytes) -> tuple[str, str]:
        r = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}", str(r["ETag"]).strip('"')

    def image(self, name: str, *, rootfs_in: str = "", boot_in: str = "",
              manifest_in: str = "", boot: bytes = b"console=ttyS0 quiet") -> str:
        prefix = f"{name}-{uuid.uuid4().hex[:6]}"
        rootfs = self.put(rootfs_in or self.bucket, f"{prefix}/rootfs",
                          b"hsqs" + bytes(4096))
        params = self.put(boot_in or self.bucket, f"{prefix}/boot_parameters", boot)
        doc = {"version": "1.0", "artifacts": [
            {"link": {"path": rootfs[0], "etag": rootfs[1], "type": "s3"},
             "type": ArtifactType.ROOTFS.value},
            {"link": {"path": params[0], "etag": params[1], "type": "s3"},
             "type": ArtifactType.BOOT_PARAMETERS.value}]}
        man = self.put(manifest_in or self.bucket, f"{prefix}/manifest.json",
                       json.dumps(doc).encode())
        rec = self.ims.create_image(name, metadata=LABEL,
                                    link={"path": man[0], "etag": man[1], "type": "s3"})
        return str(rec["id"])


async def scan(ims: IMSServer, proxy: FaultProxy, bucket: str, credentials: Path,
               allowed: str = "") -> CatalogSnapshot:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": proxy.endpoint,
                          "SBPS_MARSHAL_S3_BUCKET": bucket,
                          "SBPS_MARSHAL_S3_ALLOWED_BUCKETS": allowed}).config
    cfg = replace(cfg, catalog=replace(cfg.catalog, api_gateway=ims.url,
                                       ims_uri="v3/images", pe="off"))
    client = ImsClient(cfg.catalog, make_auth(cfg.catalog), retries=1, backoff=0.01)
    catalog = Catalog(cfg, client, S3(cfg.s3, read_credentials(str(credentials))))
    try:
        return await catalog.scan()
    finally:
        await client.close()


async def test_foreign_links_are_problems_and_never_read(
        ims_server: IMSServer, proxy: FaultProxy, s3_client: Any, s3_bucket: str,
        other_bucket: str, s3_credential_file: Path) -> None:
    lay = Layout(s3_client, s3_bucket, ims_server)
    good = lay.image("good")
    foreign = {
        lay.image("rootfs-elsewhere", rootfs_in=other_bucket):
            "manifest.artifacts[rootfs].link.path",
        lay.image("boot-elsewhere", boot_in=other_bucket, boot=SECRET):
            "manifest.artifacts[boot_parameters].link.path",
        lay.image("manifest-elsewhere", manifest_in=other_bucket): "link.path",
    }
    snap = await scan(ims_server, proxy, s3_bucket, s3_credential_file)
    assert snap.complete, snap.degraded
    assert [i.ims_id for i in snap.images] == [good]
    assert snap.images[0].boot_parameters == "console=ttyS0 quiet"
    got = {p.obj: (p.code, p.field) for p in snap.problems}
    for ims_id, field in foreign.items():
        assert got[ims_id] == ("foreign_bucket", field)
    # Not a single request went to the other bucket: not the manifest, not the secret.
    assert proxy.requests(path=f"^/{other_bucket}/") == []


async def test_a_bucket_named_by_the_admin_is_allowed(
        ims_server: IMSServer, proxy: FaultProxy, s3_client: Any, s3_bucket: str,
        other_bucket: str, s3_credential_file: Path) -> None:
    """The positive control: the same layout projects once the admin names the bucket."""
    lay = Layout(s3_client, s3_bucket, ims_server)
    ids = {lay.image("rootfs-elsewhere", rootfs_in=other_bucket),
           lay.image("boot-elsewhere", boot_in=other_bucket, boot=SECRET),
           lay.image("manifest-elsewhere", manifest_in=other_bucket)}
    snap = await scan(ims_server, proxy, s3_bucket, s3_credential_file, allowed=other_bucket)
    assert {i.ims_id for i in snap.images} == ids and not snap.problems
    assert SECRET.decode() in {i.boot_parameters for i in snap.images}
    # The request detector of the test above does see reads of the other bucket.
    assert proxy.requests(path=f"^/{other_bucket}/")


async def test_an_unreadable_boot_artifact_is_a_warning_not_a_failure(
        ims_server: IMSServer, proxy: FaultProxy, s3_client: Any, s3_bucket: str,
        s3_credential_file: Path) -> None:
    lay = Layout(s3_client, s3_bucket, ims_server)
    ims_id = lay.image("latin1", boot=b"console=ttyS0 caf\xe9")
    snap = await scan(ims_server, proxy, s3_bucket, s3_credential_file)
    (img,) = snap.images
    assert (img.ims_id, img.boot_parameters, img.boot_parameters_error) == (
        ims_id, None, "boot_parameters_unreadable")
    assert "boot_parameters_unreadable" in {w.code for w in snap.warnings}
