"""catalog.auth = spire: the field agent's SPIRE command line, its SVID choice and its
environment variables, against a FAKE agent (tests/fixtures/fake_spire_agent.py) that
prints what the real agent prints; the configuration the RPM installs uses it.
tests/integration/test_catalog_spire.py reads IMS with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbps.config import load
from sbps.config.choices import CatalogAuth
from sbps.core.decode import jwt_payload
from sbps.core.errors import UpstreamTemporaryError
from sbps.sources.catalog.auth import make_auth
from tests.fixtures.fake_spire_agent import install as fake_agent

ROOT = Path(__file__).resolve().parents[2]
RPM_CONFIG = ROOT / "contrib/rpm/marshal.toml"
NCN = "spiffe://shasta/ncn/workload/sbps-marshal"


def field_env(agent: Path, sock: Path, audience: str = "system-compute") -> dict[str, str]:
    return {"SBPS_MARSHAL_SPIRE_AGENT_PATH": str(agent),
            "SBPS_MARSHAL_SPIRE_AGENT_SOCK_PATH": str(sock),
            "SBPS_MARSHAL_SPIRE_JWT_AUDIENCE": audience}


def calls(sock: Path) -> list[list[str]]:
    return [json.loads(line) for line in Path(f"{sock}.calls").read_text().splitlines()]


def test_rpm_config_authenticates_as_the_field() -> None:
    loaded = load(str(RPM_CONFIG), env={})
    c = loaded.config.catalog
    assert c.auth is CatalogAuth.SPIRE
    assert c.spire_agent == "/opt/cray/cray-spire/sbps-marshal-spire-agent"
    assert c.spire_socket == "/var/lib/spire/agent.sock"
    assert c.token_audience == "system-compute"
    assert c.spire_xname_file == "/etc/cray/xname"
    assert c.verify_tls and c.ca_bundle == "/etc/pki/trust/anchors/platform-ca-certs.crt"
    assert not loaded.warnings
    # the schema defaults (demo, tests) stay without authentication
    assert load(str(ROOT / "contrib/marshal.example.toml"), env={}).config.catalog.auth \
        is CatalogAuth.NONE


def test_field_variables_are_settings_not_warnings(tmp_path: Path) -> None:
    agent, sock = fake_agent(tmp_path, [NCN])
    loaded = load(str(RPM_CONFIG), env=field_env(agent, sock, "other-audience"))
    assert not loaded.warnings, loaded.warnings
    c = loaded.config.catalog
    assert (c.spire_agent, c.spire_socket, c.token_audience) == (str(agent), str(sock),
                                                                 "other-audience")
    assert loaded.sources["catalog.spire_agent"] == "env SBPS_MARSHAL_SPIRE_AGENT_PATH"


async def test_the_field_command_line_and_svid(tmp_path: Path) -> None:
    xname = tmp_path / "xname"
    xname.write_text("x3000c0s7b0n0\n")
    mine = "spiffe://shasta/ncn/x3000c0s7b0n0/workload/sbps-marshal"
    agent, sock = fake_agent(tmp_path, ["spiffe://shasta/ncn/workload/cfs-state-reporter",
                                        "spiffe://shasta/ncn/x3000c0s9b0n0/workload/"
                                        "sbps-marshal", mine, NCN])
    env = field_env(agent, sock) | {"SBPS_MARSHAL_CATALOG_SPIRE_XNAME_FILE": str(xname)}
    auth = make_auth(load(str(RPM_CONFIG), env=env).config.catalog)
    token = await auth.token()
    assert token is not None and jwt_payload(token)["sub"] == mine
    assert jwt_payload(token)["aud"] == ["system-compute"]
    assert calls(sock) == [["api", "fetch", "jwt", "-audience", "system-compute",
                            "-socketPath", str(sock), "-output", "json"]]
    assert await auth.token() == token and len(calls(sock)) == 1  # cached until near exp

    # without an xname only the NCN-wide id is taken, never another node's
    xname.unlink()
    auth.invalidate()
    token = await auth.token()
    assert token is not None and jwt_payload(token)["sub"] == NCN


async def test_no_field_svid_and_no_agent_are_temporary(tmp_path: Path) -> None:
    agent, sock = fake_agent(tmp_path, ["spiffe://shasta/ncn/workload/sbps-marshal-other",
                                        "spiffe://shasta/ncn/x1/workload/sbps-marshal"])
    env = field_env(agent, sock) | {"SBPS_MARSHAL_CATALOG_SPIRE_XNAME_FILE":
                                    str(tmp_path / "none")}
    auth = make_auth(load(str(RPM_CONFIG), env=env).config.catalog)
    with pytest.raises(UpstreamTemporaryError, match="no SVID matching"):
        await auth.token()
    sock.unlink()
    with pytest.raises(UpstreamTemporaryError, match="spire_agent .* exited with 1: rpc error"):
        await auth.token()
