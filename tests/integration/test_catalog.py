"""The catalog against the dev IMS fake and moto (through the counting proxy).

Malformed records and manifests are skipped with typed problems while good images
proceed; IMS retries; auth modes; a steady pass makes no manifest GET and no HEAD; IMS
and manifest outages keep the last known good images.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sbps.config import Config, load
from sbps.core.model import ImageKind, S3Url
from sbps.sources.catalog import Catalog, CatalogSnapshot, ImsClient, ImsRefused, make_auth
from sbps.sources.catalog.ims import ImsUnavailable
from sbps.sources.s3 import S3, read_credentials
from tests.fixtures.images import UploadedImage
from tests.fixtures.proxy import Fault, FaultProxy, Seen
from tests.fixtures.servers import IMS_ODD_RECORDS, IMS_TEST_TOKEN, IMSServer, S3Server

Upload = Callable[..., UploadedImage]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(ims: IMSServer, s3_endpoint: str, bucket: str, **catalog: Any) -> Config:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": s3_endpoint,
                          "SBPS_MARSHAL_S3_BUCKET": bucket}).config
    return replace(cfg, catalog=replace(cfg.catalog, api_gateway=ims.url,
                                        ims_uri="v3/images", **catalog))


@pytest.fixture
def proxy(fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server) -> FaultProxy:
    return fault_proxy(s3_server.endpoint)


@pytest.fixture
def make_catalog(ims_server: IMSServer, proxy: FaultProxy, s3_bucket: str,
                 s3_credential_file: Path) -> Any:
    def make(ims: IMSServer = ims_server, clock: Clock | None = None,
             retries: int = 2, **catalog: Any) -> Catalog:
        cfg = config(ims, proxy.endpoint, s3_bucket, **catalog)
        client = ImsClient(cfg.catalog, make_auth(cfg.catalog), retries=retries,
                           backoff=0.01)
        s3 = S3(cfg.s3, read_credentials(str(s3_credential_file)))
        return Catalog(cfg, client, s3, clock=clock or Clock())

    return make


async def close(catalog: Catalog) -> None:
    await catalog.ims.close()


def ids(snap: CatalogSnapshot) -> set[str]:
    return {i.ims_id or str(i.source.url) for i in snap.images}


def codes(snap: CatalogSnapshot) -> dict[str, str]:
    return {p.obj: p.code for p in snap.problems}


def s3_kinds(seen: list[Seen]) -> list[str]:
    out = []
    for s in seen:
        if s.method == "GET" and "list-type" in s.query:
            out.append("LIST")
        else:
            out.append(s.method)
    return out


def put(s3_client: Any, bucket: str, key: str, body: bytes) -> str:
    return str(s3_client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]).strip('"')


def manifest_with(rootfs_path: str, etag: str | None) -> bytes:
    link: dict[str, Any] = {"path": rootfs_path, "type": "s3"}
    if etag is not None:
        link["etag"] = etag
    return json.dumps({"version": "1.0", "created": 1700000000, "artifacts": [
        {"link": link, "md5": None, "type": "application/vnd.cray.image.rootfs.squashfs"}]
    }).encode()


async def test_malformed_records_skipped_good_image_proceeds(
        ims_server_factory: Any, make_catalog: Any, upload_ims_image: Upload,
        s3_client: Any, s3_bucket: str) -> None:
    ims = ims_server_factory(load=[IMS_ODD_RECORDS])
    good = upload_ims_image("good", ims=ims)
    label = {"sbps-project": "true"}

    def record(name: str, manifest: bytes | None, **extra: Any) -> str:
        path = f"s3://{s3_bucket}/{name}/manifest.json"
        etag = put(s3_client, s3_bucket, f"{name}/manifest.json", manifest) if manifest \
            else "0" * 32
        rec = ims.create_image(name, link={"path": path, "etag": etag, "type": "s3"},
                               metadata=label, **extra)
        return str(rec["id"])

    rootfs = f"s3://{s3_bucket}/{good.ims_id}/rootfs"
    bad = {
        record("no-etag", manifest_with(rootfs, None)): "no_etag",
        record("bad-json", b"{oops"): "not_json",
        record("nested", b'{"artifacts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
            "too_deep",
        record("no-rootfs", json.dumps({"version": "1", "artifacts": []}).encode()):
            "no_rootfs",
        record("unsafe", manifest_with(f"s3://{s3_bucket}/a/../../etc", "x1")): "unsafe_key",
        record("missing-rootfs", manifest_with(f"s3://{s3_bucket}/nope/rootfs", "e1")):
            "rootfs_missing",
        record("wrong-etag", manifest_with(rootfs, "ffff")): "etag_mismatch",
        record("no-manifest", None): "not_found",
        str(ims.create_image("linkless", metadata=label)["id"]):
            "no_link",
    }
    catalog = make_catalog(ims)
    try:
        snap = await catalog.scan()
    finally:
        await close(catalog)
    assert snap.ims_ok and snap.complete, snap.degraded
    assert ids(snap) == {good.ims_id}
    image = snap.images[0]
    assert (image.kind, image.source.etag, image.source.size) == (
        ImageKind.ROOTFS, good.rootfs_etag, good.rootfs_size)
    assert image.identity.key == f"{good.rootfs_url}|{good.rootfs_etag}"
    got = codes(snap)
    for ims_id, code in bad.items():
        assert got.get(ims_id) == code, (ims_id, snap.problems)
    odd = {"0b1e5c6e-7a41-4d55-9a0e-000000000002": "no_link",
           "0b1e5c6e-7a41-4d55-9a0e-000000000003": "no_link",
           # Links into s3://boot-images, which is not this test's bucket: never read.
           "0b1e5c6e-7a41-4d55-9a0e-000000000001": "foreign_bucket"}
    for ims_id, code in odd.items():
        assert got.get(ims_id) == code, (ims_id, snap.problems)
    assert "0b1e5c6e-7a41-4d55-9a0e-000000000005" in snap.unlabelled  # no metadata at all
    assert {"metadata_list", "no_link_etag"} <= {w.code for w in snap.warnings}


async def test_ims_retries_on_500_then_succeeds(ims_server: IMSServer,
                                                make_catalog: Any) -> None:
    catalog = make_catalog()
    ims_server.faults(status=500, count=2)
    try:
        snap = await catalog.scan()
    finally:
        await close(catalog)
    assert snap.ims_ok
    assert ims_server.requests()["GET /v3/images"] == 3


@pytest.mark.parametrize("status", [404, 401, 400])
async def test_ims_no_retry_on_4xx(ims_server: IMSServer, make_catalog: Any,
                                   status: int) -> None:
    catalog = make_catalog()
    ims_server.faults(status=status, count=5)
    try:
        with pytest.raises(ImsRefused) as err:
            await catalog.ims.list_images()
    finally:
        await close(catalog)
    assert err.value.status == status
    assert ims_server.requests()["GET /v3/images"] == 1


async def test_ims_garbage_is_an_outage(ims_server: IMSServer, make_catalog: Any) -> None:
    catalog = make_catalog(retries=1)
    ims_server.faults(garbage=True, count=2)
    try:
        with pytest.raises(ImsUnavailable) as err:
            await catalog.ims.list_images()
    finally:
        await close(catalog)
    assert err.value.code == "ims_garbage"
    assert ims_server.requests()["GET /v3/images"] == 2


async def test_token_file_is_reread(ims_server_with_token: IMSServer, make_catalog: Any,
                                    tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("stale-token\n")
    catalog = make_catalog(ims_server_with_token, auth="token-file", token_file=str(token))
    try:
        with pytest.raises(ImsRefused):
            await catalog.ims.list_images()
        token.write_text(IMS_TEST_TOKEN + "\n")
        assert await catalog.ims.list_images() == []
    finally:
        await close(catalog)


async def test_command_auth_with_spire_json(ims_server_with_token: IMSServer,
                                            make_catalog: Any, tmp_path: Path) -> None:
    script = tmp_path / "spire-agent"
    out = json.dumps([{"svids": [
        {"spiffe_id": "spiffe://shasta/other", "svid": "wrong", "hint": ""},
        {"spiffe_id": "spiffe://shasta/ncn/workload/sbps", "svid": IMS_TEST_TOKEN,
         "hint": ""}]}, {"bundles": {}}])
    script.write_text(f"import sys\nassert sys.argv[1:3] == ['-audience', 'sbps-aud']\n"
                      f"print({out!r})\n")
    catalog = make_catalog(ims_server_with_token, auth="command",
                           token_command=f"{sys.executable} {script} -audience {{audience}}",
                           token_audience="sbps-aud", token_svid_pattern="/workload/sbps$")
    try:
        snap = await catalog.scan()
    finally:
        await close(catalog)
    assert snap.ims_ok, snap.degraded


async def test_steady_pass_makes_no_manifest_get_and_no_head(
        make_catalog: Any, upload_ims_image: Upload, proxy: FaultProxy, s3_client: Any,
        s3_bucket: str) -> None:
    one = upload_ims_image("one")
    two = upload_ims_image("two", multipart=True)
    pe_etag = put(s3_client, s3_bucket, "PE/cpe-base.x86_64.squashfs", b"hsqs" + b"p" * 4096)
    put(s3_client, s3_bucket, "PE/readme.txt", b"not an image")
    clock = Clock()
    catalog = make_catalog(clock=clock)
    try:
        first = await catalog.scan()
        assert first.complete, first.degraded
        assert ids(first) == {one.ims_id, two.ims_id, f"s3://{s3_bucket}/PE/cpe-base.x86_64.squashfs"}
        multipart = first.by_key()[two.ims_id].source
        assert multipart.parts == two.rootfs_parts and multipart.parts > 1
        pe = first.by_key()[f"s3://{s3_bucket}/PE/cpe-base.x86_64.squashfs"]
        assert (pe.kind, pe.source.etag, pe.name) == (ImageKind.PE, pe_etag,
                                                      "cpe-base.x86_64.squashfs")
        assert pe.identity.key == f"s3://{s3_bucket}/PE/cpe-base.x86_64.squashfs"
        kinds = s3_kinds(proxy.requests())
        assert kinds.count("LIST") == 1 and kinds.count("HEAD") >= 3
        proxy.reset_counts()
        clock.now += 60
        second = await catalog.scan()
        assert second.images == first.images and second.complete
        assert s3_kinds(proxy.requests()) == ["LIST"]
        proxy.reset_counts()
        clock.now += 600  # the slow refresh re-checks each object with one HEAD
        third = await catalog.scan()
        assert third.refreshed and third.images == first.images
        assert sorted(s3_kinds(proxy.requests())) == ["HEAD", "HEAD", "LIST"]
    finally:
        await close(catalog)


async def test_ims_outage_keeps_last_known_good(ims_server: IMSServer, make_catalog: Any,
                                                upload_ims_image: Upload) -> None:
    good = upload_ims_image("good")
    catalog = make_catalog(retries=1)
    try:
        first = await catalog.scan()
        assert ids(first) == {good.ims_id}
        ims_server.faults(status=500, count=2)  # both attempts of one pass
        second = await catalog.scan()
        assert "ims" in second.degraded and not second.ims_ok
        assert second.images == first.images
        assert good.ims_id in second.stale and not second.absent
        third = await catalog.scan()  # IMS is back
        assert third.complete and third.images == first.images and not third.stale
    finally:
        await close(catalog)


async def test_manifest_outage_keeps_last_known_good(
        ims_server: IMSServer, make_catalog: Any, upload_ims_image: Upload,
        proxy: FaultProxy) -> None:
    good = upload_ims_image("good")
    other = upload_ims_image("other")
    catalog = make_catalog()
    try:
        first = await catalog.scan()
        assert ids(first) == {good.ims_id, other.ims_id}
        # A new link etag forces a manifest GET, which fails on every attempt.
        link = dict(good.record["link"], etag="0123456789abcdef0123456789abcdef")
        ims_server.json("PATCH", f"/v3/images/{good.ims_id}", {"link": link})
        proxy.add(Fault(method="GET", path=f"{good.ims_id}/manifest.json", status=503,
                        count=100))
        second = await catalog.scan()
        assert f"manifest:{good.ims_id}" in second.degraded
        assert second.by_key()[good.ims_id] == first.by_key()[good.ims_id]
        assert second.stale == {good.ims_id} and not second.absent
        assert other.ims_id in ids(second)
    finally:
        await close(catalog)


async def test_unlabel_delete_and_deleted_object_leave(
        ims_server: IMSServer, make_catalog: Any, upload_ims_image: Upload,
        s3_client: Any, s3_bucket: str) -> None:
    a, b, c = (upload_ims_image(n) for n in ("a", "b", "c"))
    clock = Clock()
    catalog = make_catalog(clock=clock)
    try:
        assert ids(await catalog.scan()) == {a.ims_id, b.ims_id, c.ims_id}
        ims_server.remove_label(a.ims_id, "sbps-project")
        ims_server.delete(b.ims_id)
        snap = await catalog.scan()
        assert ids(snap) == {c.ims_id}
        assert snap.absent == {a.ims_id, b.ims_id} and a.ims_id in snap.unlabelled
        s3_client.delete_object(Bucket=s3_bucket, Key=f"{c.ims_id}/rootfs")
        assert ids(await catalog.scan()) == {c.ims_id}  # not noticed before the refresh
        clock.now += 601
        snap = await catalog.scan()
        assert snap.images == () and snap.absent == {c.ims_id}
        assert codes(snap)[c.ims_id] == "rootfs_missing"
    finally:
        await close(catalog)


@pytest.mark.parametrize("mode", ["all", "labelled", "off"])
async def test_pe_modes(ims_server: IMSServer, make_catalog: Any, s3_client: Any,
                        s3_bucket: str, proxy: FaultProxy, mode: str) -> None:
    for name in ("by-link", "by-name", "unregistered"):
        put(s3_client, s3_bucket, f"PE/{name}.squashfs", b"hsqs" + name.encode() * 100)
    label = {"sbps-project": "true"}
    link = {"path": f"s3://{s3_bucket}/PE/by-link.squashfs", "type": "s3"}
    reg = ims_server.create_image("whatever", link=link, metadata=label)
    by_name = ims_server.create_image("by-name", metadata=label)
    catalog = make_catalog(pe=mode)
    try:
        snap = await catalog.scan()
    finally:
        await close(catalog)
    names = {i.name for i in snap.images}
    expected = {"all": {"by-link.squashfs", "by-name.squashfs", "unregistered.squashfs"},
                "labelled": {"by-link.squashfs", "by-name.squashfs"}, "off": set()}[mode]
    assert names == expected
    if mode == "labelled":
        assert not snap.problems, snap.problems  # registrations, not broken rootfs images
        assert {i.ims_id for i in snap.images if i.name == "by-link.squashfs"} == {reg["id"]}
    else:  # without PE registration, a labelled record without a link is a broken image
        assert codes(snap) == {by_name["id"]: "no_link"}
    lists = [s for s in proxy.requests() if "list-type" in s.query]
    assert len(lists) == (0 if mode == "off" else 1)
    assert all("prefix=PE" in s.query for s in lists)


async def test_get_image_and_patch_label(ims_server: IMSServer, make_catalog: Any) -> None:
    rec = ims_server.create_image("x", metadata={"owner": "me"})
    catalog = make_catalog()
    try:
        await catalog.ims.patch_label(rec["id"], "sbps-project", "true")
        assert (await catalog.ims.get_image(rec["id"]))["metadata"] == {
            "owner": "me", "sbps-project": "true"}
        typed = await catalog.ims.get_record(rec["id"])
        assert typed.ims_id == rec["id"] and typed.metadata["sbps-project"] == "true"
        await catalog.ims.patch_label(rec["id"], "sbps-project", None)
        assert ims_server.get(rec["id"])["metadata"] == {"owner": "me"}
        with pytest.raises(ImsRefused):
            await catalog.ims.get_image("0b1e5c6e-0000-0000-0000-000000000000")
        with pytest.raises(ValueError):
            await catalog.ims.get_image("../images")
    finally:
        await close(catalog)


def test_s3url_of_pe_is_the_legacy_key() -> None:
    from sbps.core import identity
    url = S3Url("boot-images", "PE/CPE-base.x86_64-24.11.squashfs")
    assert identity.pe(url, "etag").product_id == "de4cc04e7dacfb9"


async def test_truncated_manifest_is_transient_not_a_problem(
        make_catalog: Any, upload_ims_image: Upload, proxy: FaultProxy) -> None:
    img = upload_ims_image("cut")
    proxy.add(Fault(method="GET", path=f"{img.ims_id}/manifest.json", truncate=20, count=100))
    catalog = make_catalog()
    try:
        snap = await catalog.scan()
        assert f"manifest:{img.ims_id}" in snap.degraded and not snap.problems
        proxy.clear_faults()
        snap = await catalog.scan()  # retried on the next pass, not held as a problem
        assert ids(snap) == {img.ims_id} and snap.complete
    finally:
        await close(catalog)


async def test_tenant_label_fills_desired_image_tenant(make_catalog: Any,
                                                       upload_ims_image: Upload) -> None:
    one = upload_ims_image("tenanted")
    catalog = make_catalog()
    try:
        assert (await catalog.scan()).by_key()[one.ims_id].tenant is None
        await catalog.ims.patch_label(one.ims_id, "sbps-tenant", " red ")
        assert (await catalog.scan()).by_key()[one.ims_id].tenant == "red"
        await catalog.ims.patch_label(one.ims_id, "sbps-tenant", None)
        assert (await catalog.scan()).by_key()[one.ims_id].tenant is None
    finally:
        await close(catalog)


def nested(depth: int) -> str:
    return '{"id": "nested", "metadata": ' + "[" * depth + "]" * depth + "}"


async def test_nested_record_is_a_problem_and_the_others_project(
        ims_server: IMSServer, make_catalog: Any, upload_ims_image: Upload) -> None:
    # Issue 20 item 1: a record nested 100,000 deep raised RecursionError out of the pass.
    a, b = upload_ims_image("a"), upload_ims_image("b")
    catalog = make_catalog()
    try:
        assert ids(await catalog.scan()) == {a.ims_id, b.ims_id}
        ims_server.faults(list_extra=nested(100_000), count=100)
        snap = await catalog.scan()
        assert snap.ims_ok and ids(snap) == {a.ims_id, b.ims_id}
        assert codes(snap)["record[2]"] == "too_deep", snap.problems
        # With a record nobody can name, a record missing from the list may be that one:
        # its image is held, not removed.
        ims_server.delete(b.ims_id)
        snap = await catalog.scan()
        assert ids(snap) == {a.ims_id, b.ims_id} and not snap.absent
        ims_server.clear_faults()
        snap = await catalog.scan()
        assert ids(snap) == {a.ims_id} and snap.absent == {b.ims_id}
        assert "record[2]" not in codes(snap)
    finally:
        await close(catalog)


async def test_head_without_content_length_is_a_problem_of_that_image(
        make_catalog: Any, upload_ims_image: Upload, proxy: FaultProxy) -> None:
    # Issue 20 item 1: a HEAD answer without Content-Length raised KeyError out of the pass.
    a, b = upload_ims_image("a"), upload_ims_image("b")
    proxy.add(Fault(method="HEAD", path=f"{a.ims_id}/rootfs", count=100,
                    strip_headers=("Content-Length",)))
    catalog = make_catalog()
    try:
        snap = await catalog.scan()
    finally:
        await close(catalog)
    assert ids(snap) == {b.ims_id}
    assert codes(snap)[a.ims_id] == "bad_header", snap.problems
