"""The shared S3 client against the real moto server: conditional writes, parts, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from sbps.config import load
from sbps.core.errors import UpstreamTemporaryError
from sbps.core.model import S3Url
from sbps.sources.s3 import S3, NotFound, PreconditionFailed, parse_url, read_credentials
from tests.fixtures.servers import S3Server


@pytest.fixture
def s3(s3_server: S3Server, s3_credential_file: Path) -> S3:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": s3_server.endpoint}).config.s3
    return S3(cfg, read_credentials(str(s3_credential_file)))


def test_conditional_create_has_one_winner(s3: S3, s3_bucket: str) -> None:
    url = S3Url(s3_bucket, ".sbps/luns/7")
    etag = s3.put_bytes(url, b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        s3.put_bytes(url, b"second", if_none_match=True)
    assert s3.get_bytes(url) == (b"first", etag)
    new = s3.put_bytes(url, b"third", if_match=etag)
    with pytest.raises(PreconditionFailed):
        s3.put_bytes(url, b"fourth", if_match=etag)
    assert s3.get_bytes(url)[1] == new


def test_multipart_layout_from_head(s3: S3, s3_client: Any, s3_bucket: str) -> None:
    part = 5 * 2**20
    body = bytes(range(256)) * (part * 2 // 256) + b"tail"
    up = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="img/rootfs")
    etags = []
    for n, start in enumerate(range(0, len(body), part), 1):
        r = s3_client.upload_part(Bucket=s3_bucket, Key="img/rootfs", UploadId=up["UploadId"],
                                  PartNumber=n, Body=body[start:start + part])
        etags.append({"PartNumber": n, "ETag": r["ETag"]})
    s3_client.complete_multipart_upload(Bucket=s3_bucket, Key="img/rootfs",
                                        UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": etags})
    url = S3Url(s3_bucket, "img/rootfs")
    info = s3.head(url, part_number=1)
    assert (info.size, info.parts, info.part_size) == (len(body), 3, part)
    md5s = b"".join(hashlib.md5(body[i:i + part]).digest() for i in range(0, len(body), part))
    assert info.etag == f"{hashlib.md5(md5s).hexdigest()}-3"
    got = b"".join(s3.get_range(url, part, part + 9, if_match=info.etag))
    assert got == body[part:part + 10]


def test_missing_object_and_listing(s3: S3, s3_bucket: str) -> None:
    with pytest.raises(NotFound):
        s3.head(S3Url(s3_bucket, "nope"))
    for name in ("a", "b"):
        s3.put_bytes(S3Url(s3_bucket, f"PE/{name}.squashfs"), name.encode())
    s3.put_bytes(S3Url(s3_bucket, "other/x"), b"x")
    assert sorted(o.url.key for o in s3.list(s3_bucket, "PE/")) == [
        "PE/a.squashfs", "PE/b.squashfs"]


def test_unreachable_endpoint_is_temporary(s3_credential_file: Path) -> None:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": "http://127.0.0.1:9",
                          "SBPS_MARSHAL_S3_TIMEOUT": "1"}).config.s3
    with pytest.raises(UpstreamTemporaryError):
        S3(cfg, read_credentials(str(s3_credential_file))).head(S3Url("bucket", "k"))


@pytest.mark.parametrize("bad", ["s3://b/../etc", "s3://bucket/a//b", "s3://bucket/a\nb",
                                 "http://bucket/a", "s3://bucket//abs"])
def test_unsafe_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_url(bad)


def test_credentials_formats(tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    agent.write_text("AKEY:s3cret\n")
    aws = tmp_path / "aws"
    aws.write_text("[default]\naws_access_key_id = AKEY\naws_secret_access_key = s3cret\n")
    for path in (agent, aws):
        creds = read_credentials(str(path))
        assert (creds.access_key, creds.secret_key) == ("AKEY", "s3cret")
        assert "s3cret" not in repr(creds)
