"""IMS token providers: token file re-read on change, SPIRE JSON selection, expiry cache."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

from sbps.core.errors import ConfigError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.sources.catalog.auth import TokenCommand, TokenFile, jwt_expiry, select_token


def jwt(exp: float | None, sub: str = "x") -> str:
    def b64(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    claims: dict[str, object] = {"sub": sub}
    if exp is not None:
        claims["exp"] = exp
    return f"{b64({'alg': 'none'})}.{b64(claims)}.sig"


def spire(*svids: tuple[str, str]) -> str:
    return json.dumps([{"svids": [{"spiffe_id": i, "svid": t, "hint": ""} for i, t in svids]},
                       {"bundles": {"spiffe://shasta": "e30="}}])


def test_raw_jwt_and_spire_json() -> None:
    tok = jwt(100)
    assert select_token(f"{tok}\n") == tok
    out = spire(("spiffe://shasta/ncn/workload/other", "T1"),
                ("spiffe://shasta/ncn/workload/sbps-marshal", "T2"))
    assert select_token(out) == "T1"
    assert select_token(out, r"/sbps-marshal$") == "T2"
    with pytest.raises(ValueError, match="no SVID matching"):
        select_token(out, "nothing-like-this")
    for bad in ("", "two words", "{broken", "[]", '{"svids": []}'):
        with pytest.raises(ValueError):
            select_token(bad)


def test_jwt_expiry() -> None:
    assert jwt_expiry(jwt(1234.0)) == 1234.0
    assert jwt_expiry(jwt(None)) is None
    assert jwt_expiry("not.a.jwt!") is None
    assert jwt_expiry("opaque") is None


async def test_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    provider = TokenFile(str(path))
    assert await provider.token() == "first"
    path.write_text("second-longer\n")
    assert await provider.token() == "second-longer"
    os.utime(path, ns=(1, 1))
    path.write_text("third-longer!\n")  # same size as before, new mtime
    assert await provider.token() == "third-longer!"
    path.unlink()
    with pytest.raises(UpstreamPermanentError):
        await provider.token()


async def test_token_command_caches_until_expiry(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = tmp_path / "agent.py"
    now = [1000.0]
    script.write_text(
        "import sys, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        f"print({spire(('spiffe://shasta/sbps', jwt(1300.0)))!r}.replace('sig', 'sig' + str(n)))\n")
    provider = TokenCommand(f"{sys.executable} {script} -audience {{audience}}", "aud",
                            "sbps", clock=lambda: now[0])
    first = await provider.token()
    assert first is not None and first.endswith("sig1")
    now[0] = 1200.0
    assert await provider.token() == first
    now[0] = 1250.0  # within the margin before exp: a new token is fetched
    assert (await provider.token() or "").endswith("sig2")
    provider.invalidate()
    assert (await provider.token() or "").endswith("sig3")


async def test_token_command_audience_is_one_word(tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text("import sys, json; print(json.dumps(sys.argv[1:]))\n")
    provider = TokenCommand(f"{sys.executable} {script} -audience {{audience}}",
                            "a b; rm -rf /")
    with pytest.raises(UpstreamTemporaryError):
        await provider.token()  # the JSON list has no svids
    assert provider.argv[-2:] == ["-audience", "a b; rm -rf /"]


async def test_token_command_failure_is_temporary(tmp_path: Path) -> None:
    provider = TokenCommand(f"{sys.executable} -c 'import sys; sys.exit(3)'", "aud")
    with pytest.raises(UpstreamTemporaryError, match="exited with 3"):
        await provider.token()
    with pytest.raises(ConfigError):
        TokenCommand("", "aud")
    with pytest.raises(ConfigError):
        TokenCommand("x", "aud", "(")
