"""The catalog on a real RGW: more than one listing page under PE/, and object keys with
spaces and non-ASCII characters (which RGW signs, lists and URL-encodes itself)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.fixtures.proxy import FaultProxy
from tests.integration.test_catalog import close, make_catalog  # noqa: F401

PE_OBJECTS = 1_050  # more than one page of 1,000 keys
ODD = ["PE/with space.squashfs", "PE/ünïcödé-ß.squashfs", "PE/日本 語.squashfs"]


async def test_more_than_one_listing_page_and_odd_keys(
        make_catalog: Any, s3_client: Any, s3_bucket: str,  # noqa: F811
        proxy: FaultProxy) -> None:
    keys = [f"PE/pe-{n:04d}.squashfs" for n in range(PE_OBJECTS - len(ODD))] + ODD

    def put(key: str) -> None:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"hsqs" + key.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    catalog = make_catalog(pe="all")
    try:
        proxy.reset_counts()
        snap = await catalog.scan()
    finally:
        await close(catalog)
    assert not snap.problems, snap.problems[:3]
    got = {str(i.source.url).split("/", 3)[3] for i in snap.images}
    assert got == set(keys)
    names = {i.name for i in snap.images}
    assert {"with space.squashfs", "ünïcödé-ß.squashfs", "日本 語.squashfs"} <= names
    lists = [s for s in proxy.requests() if "list-type" in s.query]
    assert len(lists) == 2  # two pages, the second from the continuation token
    for img in snap.images:
        if img.name in ("with space.squashfs", "日本 語.squashfs"):
            assert img.source.size == 4 + len(("PE/" + img.name).encode())
