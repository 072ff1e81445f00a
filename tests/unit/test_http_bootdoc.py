"""Boot parameters from the snapshot (issue 20, item 2) and one catalog entry per record
(item 9), on the pure functions: the lifecycle, the catalog view, the boot document."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sbps.core import identity
from sbps.core.model import Arch, DesiredImage, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import Lun, StorageObject, TargetState
from sbps.publish.http import bootdoc, catalog
from sbps.publish.http.errors import ApiError, scrub
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.status import Status

ETAG = "0123456789abcdef0123456789abcdef"
URL = S3Url("boot-images", "first/rootfs")
SETTINGS = bootdoc.BootSettings("sys", "site.example")


def record(ims_id: str, tenant: str | None = None, boot: str | None = None) -> DesiredImage:
    """A rootfs image as the catalog resolves a record; every record here shares URL."""
    return DesiredImage(identity=identity.rootfs(URL, ETAG), kind=ImageKind.ROOTFS,
                        source=ObjectInfo(URL, ETAG, 4096), name=f"name-{ims_id}",
                        ims_id=ims_id, arch=Arch.X86_64, tenant=tenant, boot_parameters=boot)


def exported(*desired: DesiredImage) -> Status:
    """The snapshot after a pass that found ``desired`` and the first one's LUN exported."""
    ident = desired[0].identity
    target = TargetState(iqn="iqn.x:w1", exists=True, tpg_enabled=True, storage_objects=(
        StorageObject(ident.name, "/c/x", 4096, ident.serial, ident.product_id),),
        luns=(Lun(7, ident.name),))
    life = Lifecycle(lambda: 1.0, 30, 3600)
    life.observe(desired, target, {}, {}, ())
    return Status(iqn="iqn.x:w1", backend="lio", images=life.status(), target=target)


def test_two_records_on_one_rootfs_keep_their_own_entries() -> None:
    first, second = record("aaaa-1", "t1"), record("bbbb-2", "t2")
    status = exported(first, second)
    (only,) = status.images
    assert only.image == first and only.aliases == (second,)
    for ims_id, name in (("aaaa-1", "name-aaaa-1"), ("bbbb-2", "name-bbbb-2")):
        (entry,) = catalog.catalog(status, match=ims_id)["images"]
        assert (entry["ims_id"], entry["name"], entry["lun_id"], entry["state"]) == (
            ims_id, name, 7, "exported")
    # The LUN's key lists both records; a tenant view sees only its own record.
    assert {e["ims_id"] for e in catalog.catalog(status, match=first.identity.name)
            ["images"]} == {"aaaa-1", "bbbb-2"}
    seen = catalog.catalog(status, keep=lambda tenant: tenant == "t2")["images"]
    assert [e["ims_id"] for e in seen] == ["bbbb-2"]


def test_a_record_that_leaves_gives_the_entry_back_to_the_other() -> None:
    first, second = record("aaaa-1"), record("bbbb-2")
    life = Lifecycle(lambda: 1.0, 30, 3600)
    ident = first.identity
    target = TargetState(iqn="i", exists=True, luns=(Lun(7, ident.name),))
    life.observe((first, second), target, {}, {}, ())
    life.observe((second,), target, {}, {}, ())
    (only,) = life.status()
    assert only.image == second and only.aliases == ()


def test_bootparams_of_a_catalog_image_come_from_the_cached_artifact() -> None:
    status = exported(record("aaaa-1", boot="console=ttyS0 root=/dev/sda quiet"),
                      record("bbbb-2", boot="console=ttyS1"))
    doc = bootdoc.document(status, "aaaa-1", "hsn", SETTINGS)
    assert doc is not None and doc["ims_id"] == "aaaa-1"
    assert doc["cmdline"] == f"console=ttyS0 quiet {doc['root']}"
    assert doc["root"] == (f"root=sbps-s3:{URL}:{ETAG}:sbps:v1:iqn.2023-06.csm.iscsi:"
                           "_sbps-hsn._tcp.sys.site.example:300")
    # The second record of the same rootfs has its own parameters.
    other = bootdoc.document(status, "bbbb-2", "nmn", SETTINGS)
    assert other is not None and other["cmdline"].startswith("console=ttyS1 root=")


def test_ids_not_in_the_catalog_are_none() -> None:
    img = record("aaaa-1")
    status = exported(img)
    assert bootdoc.document(status, "zzzz-9", "hsn", SETTINGS) is None
    # Known to the lifecycle, but not listed (staging): not in the catalog either.
    staging = replace(status, images=tuple(replace(s, state=s.state.STAGING)
                                           for s in status.images))
    assert bootdoc.document(staging, "aaaa-1", "hsn", SETTINGS) is None


def test_an_unreadable_artifact_is_a_422_without_its_url() -> None:
    img = replace(record("aaaa-1"), boot_parameters_error="boot_parameters_unreadable")
    with pytest.raises(ApiError) as info:
        bootdoc.document(exported(img), "aaaa-1", "hsn", SETTINGS)
    assert (info.value.status, info.value.code) == (422, "boot_parameters_unreadable")
    assert "://" not in info.value.message


def test_error_messages_lose_every_url() -> None:
    text = ("IMS GET https://api-gw-service-nmn.local/apis/ims/v3/images/x: 404 "
            "(s3://other-bucket/secret, 'http://10.0.0.1:8080/a?b=c')")
    out = scrub(text)
    assert "://" not in out and "api-gw" not in out and "other-bucket" not in out
    assert out.startswith("IMS GET <url>")
