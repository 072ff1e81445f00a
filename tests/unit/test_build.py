"""Pure parts of sbps.imagebuild: the mksquashfs command line, ETag formula, image ids."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sbps.core.errors import InputError
from sbps.imagebuild.squashfs import mksquashfs_command
from sbps.imagebuild.upload import check_image_id, manifest_document, multipart_etag


def test_reproducible_command_keeps_owners_and_xattrs() -> None:
    cmd = mksquashfs_command(Path("/src"), Path("/out"), compression="zstd", reproducible=True)
    assert cmd[:3] == ["mksquashfs", "/src", "/out"]
    assert "-noappend" in cmd and cmd[cmd.index("-comp") + 1] == "zstd"
    assert cmd[cmd.index("-mkfs-time") + 1] == "0" and cmd[cmd.index("-all-time") + 1] == "0"
    assert not {"-all-root", "-no-xattrs", "-root-owned", "-force-uid"} & set(cmd)


def test_non_reproducible_command_keeps_times() -> None:
    cmd = mksquashfs_command(Path("/s"), Path("/o"), compression="gzip", reproducible=False)
    assert "-all-time" not in cmd and "-mkfs-time" not in cmd


def test_multipart_etag_single_part() -> None:
    d = hashlib.md5(b"x").digest()
    assert multipart_etag([d]) == hashlib.md5(d).hexdigest() + "-1"


@pytest.mark.parametrize("good", ["4fab0408-0bfe-4668-b957-964f8ff0e4e9", "img_1.2-a"])
def test_image_id_accepts(good: str) -> None:
    assert check_image_id(good) == good


@pytest.mark.parametrize("bad", ["", "/x", "a/b", "..", "a..b", "a b", "é", ".hidden"])
def test_image_id_rejects(bad: str) -> None:
    with pytest.raises(InputError):
        check_image_id(bad)


def test_empty_manifest_document() -> None:
    doc = manifest_document((), datetime(2024, 1, 2, tzinfo=UTC))
    assert doc == b'{\n  "version": "1.0",\n  "created": "2024-01-02T00:00:00+00:00",\n  "artifacts": []\n}'
