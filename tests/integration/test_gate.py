"""Node gate providers against real files and the development Kubernetes API fake (TLS)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sbps.config import load
from sbps.core.errors import SbpsError
from sbps.publish.gate import FileGate, K8sLabelGate, make_gate
from tests.fixtures.servers import stop_process

ROOT = Path(__file__).resolve().parents[2]


async def test_file_gate(tmp_path: Path) -> None:
    flag = tmp_path / "serve"
    gate = FileGate(str(flag))
    assert not await gate.is_open()
    flag.touch()
    assert await gate.is_open()


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    token = tmp_path / "token"
    token.write_text("k8s-dev-token\n")
    proc = subprocess.Popen([sys.executable, str(ROOT / "contrib" / "k8s_dev_server.py"),
                             "--cert", str(cert), "--key", str(key), "--token-file", str(token),
                             "--node", "ncn-w001"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1], cert, token
    finally:
        stop_process(proc)


def _label(url: str, cert: Path, value: str | None) -> None:
    import ssl
    ctx = ssl.create_default_context(cafile=str(cert))
    req = urllib.request.Request(f"{url}/__dev/label", method="POST",
                                 data=json.dumps({"node": "ncn-w001", "key": "iscsi",
                                                  "value": value}).encode())
    urllib.request.urlopen(req, context=ctx).read()


async def test_k8s_label_gate_follows_the_label(k8s: tuple[str, Path, Path]) -> None:
    url, cert, token = k8s
    env = {"SBPS_MARSHAL_NODE_GATE": "k8s-label", "SBPS_MARSHAL_NODE_K8S_API": url,
           "SBPS_MARSHAL_NODE_K8S_TOKEN_FILE": str(token),
           "SBPS_MARSHAL_NODE_K8S_CA_FILE": str(cert)}
    cfg = load(None, env=env).config.node
    gate = make_gate(cfg, "ncn-w001")
    assert isinstance(gate, K8sLabelGate)
    assert not await gate.is_open()
    _label(url, cert, "sbps")
    assert await gate.is_open()
    _label(url, cert, None)
    assert not await gate.is_open()
    token.write_text("wrong")
    with pytest.raises(SbpsError, match="401"):
        await gate.is_open()
    wrong_ca = K8sLabelGate(replace(cfg, k8s_ca_file=""), "ncn-w001")
    with pytest.raises(SbpsError):
        await wrong_ca.is_open()
