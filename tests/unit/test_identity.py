"""Identity keys, digests and the names derived from them, against the published values."""

from __future__ import annotations

import hashlib

import pytest

from sbps.core import identity
from sbps.core.identity import PeMode
from sbps.core.model import S3Url

PE_URL = S3Url("boot-images", "PE/CPE-base.x86_64-24.11.squashfs")


def serial_for_wwid(wwid: str) -> str:
    """The serial prefix a WWID encodes, as a client matching its device would read it."""
    if not wwid.startswith("36001405") or len(wwid) != 33:
        raise ValueError(f"WWID {wwid!r} is not an LIO NAA WWID (36001405 + 25 hex digits)")
    return wwid[8:]


def test_published_check_value() -> None:
    ident = identity.pe(PE_URL, "ignored-in-legacy-mode")
    assert ident.key == "s3://boot-images/PE/CPE-base.x86_64-24.11.squashfs"
    assert ident.product_id == "de4cc04e7dacfb9"
    assert ident.name == "de4cc04e7dacfb9"
    assert ident.wwid == "36001405de4cc04e7dacfb9ada0a6b4cc"
    assert ident.serial == ident.digest[:31]
    assert serial_for_wwid(ident.wwid) == ident.serial[:25]


def test_digest_is_sha224_of_the_key() -> None:
    key = "s3://boot-images/abc/rootfs|0123-4"
    assert identity.digest(key) == hashlib.sha224(key.encode()).hexdigest()
    assert len(identity.digest(key)) == 56


def test_rootfs_key_is_path_and_unquoted_etag() -> None:
    url = S3Url("boot-images", "4fab/rootfs")
    assert identity.rootfs_key(url, '"b6ea-1977"') == "s3://boot-images/4fab/rootfs|b6ea-1977"
    assert identity.rootfs(url, "b6ea-1977").digest == identity.digest(
        "s3://boot-images/4fab/rootfs|b6ea-1977")


def test_pe_modes() -> None:
    legacy_a = identity.pe(PE_URL, "etag-a", PeMode.LEGACY)
    legacy_b = identity.pe(PE_URL, "etag-b", PeMode.LEGACY)
    assert legacy_a == legacy_b  # legacy keys by path only: a re-upload keeps the WWID
    content_a = identity.pe(PE_URL, "etag-a", PeMode.CONTENT)
    content_b = identity.pe(PE_URL, "etag-b", PeMode.CONTENT)
    assert content_a.key == f"{PE_URL}|etag-a"
    assert content_a.wwid != content_b.wwid


def test_target_iqn() -> None:
    assert identity.target_iqn("ncn-w002") == "iqn.2023-06.csm.iscsi:ncn-w002"
    for bad in ("", "ncn w002", "-w1", "a" * 64, "w/1"):
        with pytest.raises(ValueError):
            identity.target_iqn(bad)
    with pytest.raises(ValueError):
        identity.target_iqn("w1", prefix="not-an-iqn")


def test_serial_for_wwid_rejects_other_wwids() -> None:
    for bad in ("36001405abc", "3600a098" + "0" * 25, ""):
        with pytest.raises(ValueError):
            serial_for_wwid(bad)
