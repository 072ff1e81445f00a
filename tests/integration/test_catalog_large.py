"""A catalog larger than one read buffer: the IMS client reads the whole list, not its
first chunk (a field catalog of a few thousand records is several hundred KiB)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sbps.config import load
from sbps.sources.catalog import ImsClient, make_auth


async def test_list_of_2000_records_is_read_whole(ims_server_factory: Any,
                                                  tmp_path: Path) -> None:
    records = [{"id": str(uuid.UUID(int=n, version=4)), "name": f"image-{n:04d}",
                "arch": "x86_64", "created": "2026-01-01T00:00:00+00:00",
                "link": {"path": f"s3://boot-images/{n}/manifest.json", "etag": f"{n:032x}",
                         "type": "s3"},
                "metadata": {"sbps-project": "true" if n % 8 == 0 else "false"}}
               for n in range(2000)]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    assert path.stat().st_size > 512 * 1024
    ims = ims_server_factory(load=[path])
    cfg = load(None, env={"SBPS_MARSHAL_CATALOG_API_GATEWAY": ims.url,
                          "SBPS_MARSHAL_CATALOG_IMS_URI": "v3/images"}).config
    client = ImsClient(cfg.catalog, make_auth(cfg.catalog), retries=0)
    try:
        listed = await client.list_images()
    finally:
        await client.close()
    assert [r["id"] for r in listed] == [r["id"] for r in records]
