"""The counting, fault-injecting proxy in front of moto: each fault kind as a client sees it."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest

from sbps.core.errors import UpstreamTemporaryError
from sbps.core.model import S3Url
from sbps.sources.s3 import S3
from tests.fixtures.proxy import Fault, FaultProxy
from tests.fixtures.servers import ACCESS_KEY, SECRET_KEY, S3Server

BODY = bytes(range(256)) * 1024


@pytest.fixture
def proxy(fault_proxy: Callable[[str], FaultProxy], s3_server: S3Server) -> FaultProxy:
    return fault_proxy(s3_server.endpoint)


@pytest.fixture
def obj(s3_client: Any, s3_bucket: str) -> str:
    s3_client.put_object(Bucket=s3_bucket, Key="x/obj", Body=BODY)
    return f"/{s3_bucket}/x/obj"


def raw(proxy: FaultProxy, method: str, path: str) -> tuple[int, bytes]:
    """A plain HTTP request, presigned for the proxy's address (moto wants a signature)."""
    bucket, _, key = path.lstrip("/").partition("/")
    client = S3Server(proxy.endpoint, ACCESS_KEY, SECRET_KEY).client()
    op = "head_object" if method == "HEAD" else "get_object"
    url = client.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(method, url.removeprefix(proxy.endpoint))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_forwards_and_counts(proxy: FaultProxy, obj: str) -> None:
    assert raw(proxy, "GET", obj) == (200, BODY)
    status, body = raw(proxy, "HEAD", obj)
    assert (status, body) == (200, b"")
    assert proxy.counts() == {"GET": 1, "HEAD": 1}
    assert [s.path for s in proxy.requests("GET")] == [obj]


def test_status_latency_and_matching(proxy: FaultProxy, obj: str) -> None:
    proxy.add(Fault(method="GET", path="/other", status=500))
    proxy.add(Fault(method="GET", path="/x/obj", status=503, latency=0.05, count=2))
    assert raw(proxy, "GET", obj)[0] == 503
    assert raw(proxy, "GET", obj)[0] == 503
    assert raw(proxy, "GET", obj) == (200, BODY)
    assert raw(proxy, "GET", obj.replace("x/obj", "other"))[0] == 500
    assert raw(proxy, "GET", obj.replace("x/obj", "other"))[0] == 404


def test_reset_and_truncate(proxy: FaultProxy, obj: str) -> None:
    proxy.add(Fault(reset=True))
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        raw(proxy, "GET", obj)
    proxy.add(Fault(truncate=1000))
    with pytest.raises(http.client.IncompleteRead) as err:
        raw(proxy, "GET", obj)
    assert len(err.value.partial) == 1000


def test_sbps_s3_client_through_faults(proxy: FaultProxy, obj: str, s3_bucket: str,
                                      s3_credential_file: Any) -> None:
    from sbps.config import load
    from sbps.sources.s3 import read_credentials
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": proxy.endpoint}).config.s3
    s3 = S3(cfg, read_credentials(str(s3_credential_file)))
    url = S3Url(s3_bucket, "x/obj")
    proxy.add(Fault(method="HEAD", status=500, count=1))
    assert s3.head(url).size == len(BODY)  # botocore retried once
    assert proxy.counts()["HEAD"] == 2
    proxy.add(Fault(method="GET", status=503, count=10))
    with pytest.raises(UpstreamTemporaryError):
        s3.get_bytes(url)
    proxy.clear_faults()
    proxy.add(Fault(method="GET", truncate=10, count=10))
    with pytest.raises((UpstreamTemporaryError, botocore.exceptions.BotoCoreError)):
        s3.get_bytes(url)
