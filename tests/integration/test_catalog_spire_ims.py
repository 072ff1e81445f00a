"""IMS read as the field reads it: a SPIRE JWT from the agent (a FAKE,
tests/fixtures/fake_spire_agent.py) that the IMS fake requires, with the configuration the
RPM installs and the field's variables; and a certificate that does not verify gives one
line saying what to set."""

from __future__ import annotations

import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sbps.config import load
from sbps.sources.catalog.auth import make_auth
from sbps.sources.catalog.ims import ImsClient, ImsRefused, ImsUnavailable
from tests.fixtures.fake_spire_agent import install as fake_agent

ROOT = Path(__file__).resolve().parents[2]
RPM_CONFIG = str(ROOT / "contrib/rpm/marshal.toml")
NCN = "spiffe://shasta/ncn/workload/sbps-marshal"


def field_env(agent: Path, sock: Path) -> dict[str, str]:
    return {"SBPS_MARSHAL_SPIRE_AGENT_PATH": str(agent),
            "SBPS_MARSHAL_SPIRE_AGENT_SOCK_PATH": str(sock),
            "SBPS_MARSHAL_SPIRE_JWT_AUDIENCE": "system-compute"}


async def test_ims_accepts_the_field_svid(tmp_path: Path, ims_server_factory: Any) -> None:
    agent, sock = fake_agent(tmp_path, ["spiffe://shasta/ncn/workload/other", NCN])
    env = field_env(agent, sock)
    token = await make_auth(load(RPM_CONFIG, env=env).config.catalog).token()
    assert token is not None
    ims = ims_server_factory(token=token)  # accepts this JWT only
    env |= {"SBPS_MARSHAL_API_GATEWAY": ims.url, "SBPS_MARSHAL_IMS_URI": "v3/images"}
    cfg = load(RPM_CONFIG, env=env).config.catalog
    async with ImsClient(cfg, make_auth(cfg), retries=0) as client:
        assert await client.list_images() == []
    # negative control: the schema default (no authentication) is refused by this IMS
    plain = load(None, env={k: v for k, v in env.items() if "SPIRE" not in k}).config.catalog
    async with ImsClient(plain, make_auth(plain), retries=0) as client:
        with pytest.raises(ImsRefused, match="401"):
            await client.list_images()


@pytest.fixture
async def tls_ims(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An API gateway on loopback behind TLS with a self-signed certificate, serving an
    empty image list: (gateway, cert). Only its certificate matters here."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    async def images(_: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/apis/ims/v3/images", images)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}", cert
    finally:
        await runner.cleanup()


async def test_certificate_failure_says_what_to_set(
        tls_ims: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    gateway, cert = tls_ims
    base = {"SBPS_MARSHAL_API_GATEWAY": gateway, "SBPS_MARSHAL_CATALOG_AUTH": "none"}
    cfg = load(RPM_CONFIG, env=base).config.catalog  # the platform CA: absent here
    async with ImsClient(cfg, make_auth(cfg), retries=0) as client:
        with pytest.raises(ImsUnavailable, match="catalog.ca_bundle"):
            await client.list_images()
    cfg = load(None, env=base).config.catalog  # the system store does not know this CA
    with caplog.at_level(logging.ERROR, "sbps.sources.catalog.ims"):
        async with ImsClient(cfg, make_auth(cfg), retries=0) as client:
            for _ in range(2):
                with pytest.raises(ImsUnavailable, match="certificate not verified"):
                    await client.list_images()
    hints = [r.getMessage() for r in caplog.records if "catalog.ca_bundle" in r.getMessage()]
    assert len(hints) == 1, hints  # one line, not one per failure
    assert "platform-ca-certs.crt" in hints[0] and gateway in hints[0]
    cfg = load(None, env=base | {"SBPS_MARSHAL_CATALOG_CA_BUNDLE": str(cert)}).config.catalog
    async with ImsClient(cfg, make_auth(cfg), retries=0) as client:
        assert await client.list_images() == []
