"""IMS client pieces that need no server: URL, TLS settings, retries on connection errors."""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest

from sbps.config import CatalogConfig
from sbps.sources.catalog.auth import NoAuth
from sbps.sources.catalog.ims import ImsClient, ImsUnavailable, check_id, images_url, ssl_context
from tests.fixtures.servers import free_port

CA = "/etc/ssl/certs/ca-certificates.crt"


def test_url_and_tls_settings() -> None:
    cfg = CatalogConfig()
    assert images_url(cfg) == "https://api-gw-service-nmn.local/apis/ims/v3/images"
    assert images_url(replace(cfg, api_gateway="http://h:1/", ims_uri="/v3/images/")) == \
        "http://h:1/v3/images"
    assert ssl_context(cfg) is True
    assert ssl_context(replace(cfg, verify_tls=False)) is False
    ctx = ssl_context(replace(cfg, ca_bundle=CA))
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a?b", "x" * 200, "a\nb"])
def test_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        check_id(bad)


async def test_connection_errors_are_retried_with_backoff() -> None:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    cfg = replace(CatalogConfig(), api_gateway=f"http://127.0.0.1:{free_port()}",
                  timeout=5)
    async with ImsClient(cfg, NoAuth(), retries=3, backoff=1.0, sleep=sleep) as ims:
        with pytest.raises(ImsUnavailable):
            await ims.list_images()
    assert len(delays) == 3
    for n, delay in enumerate(delays):
        assert 0.5 * 2**n <= delay <= 1.5 * 2**n
