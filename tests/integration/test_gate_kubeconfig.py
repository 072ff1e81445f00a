"""The k8s-label gate through a kubeconfig, as the field agent's ``kubectl --kubeconfig
/etc/kubernetes/admin.conf``: client-certificate auth against the Kubernetes FAKE
(contrib/k8s_dev_server.py) over TLS, with the cluster's CA from the kubeconfig."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbps.config import load
from sbps.core.errors import SbpsError, UpstreamPermanentError
from sbps.publish.gate import K8sLabelGate, make_gate
from tests.fixtures.servers import stop_process

ROOT = Path(__file__).resolve().parents[2]


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def issue(d: Path, ca: tuple[Path, Path], name: str, subj: str, ext: str = "") -> tuple[Path,
                                                                                      Path]:
    cert, key, csr = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", key, "-out", csr)
    extra: list[str | Path] = []
    if ext:
        (d / f"{name}.ext").write_text(ext)
        extra = ["-extfile", d / f"{name}.ext"]
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "1", "-out", cert, *extra)
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "kubernetes")
    other = make_ca(d, "other")
    return {"ca": ca, "other": other,
            "server": issue(d, ca, "apiserver", "/CN=kube-apiserver",
                            "subjectAltName=IP:127.0.0.1\n"),
            "admin": issue(d, ca, "admin", "/O=system:masters/CN=kubernetes-admin"),
            "stranger": issue(d, other, "stranger", "/O=system:masters/CN=stranger")}


@pytest.fixture
def k8s(tmp_path: Path, pki: dict[str, tuple[Path, Path]]) -> Iterator[str]:
    token = tmp_path / "token"
    token.write_text("k8s-dev-token\n")
    proc = subprocess.Popen([sys.executable, str(ROOT / "contrib" / "k8s_dev_server.py"),
                             "--cert", str(pki["server"][0]), "--key", str(pki["server"][1]),
                             "--client-ca", str(pki["ca"][0]), "--token-file", str(token),
                             "--node", "ncn-w001"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        stop_process(proc)


def label(url: str, ca: Path, value: str | None) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(f"{url}/__dev/label", method="POST",
                                 data=json.dumps({"node": "ncn-w001", "key": "iscsi",
                                                  "value": value}).encode())
    urllib.request.urlopen(req, context=ctx).read()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def admin_conf(server: str, ca: Path, cert: Path, key: Path, *, inline: bool = True) -> str:
    """A kubeconfig shaped as kubeadm writes /etc/kubernetes/admin.conf (inline data), or
    with file paths relative to its directory."""
    if inline:
        cluster = f"certificate-authority-data: {b64(ca)}"
        user = (f"client-certificate-data: {b64(cert)}\n"
                f"    client-key-data: {b64(key)}")
    else:
        cluster = f"certificate-authority: pki/{ca.name}"
        user = f"client-certificate: pki/{cert.name}\n    client-key: pki/{key.name}"
    return f"""apiVersion: v1
clusters:
- cluster:
    {cluster}
    server: {server}
  name: kubernetes
- cluster:
    server: https://elsewhere.invalid:6443
  name: decoy
contexts:
- context:
    cluster: decoy
    user: nobody
  name: decoy
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {{}}
users:
- name: kubernetes-admin
  user:
    {user}
"""


@pytest.mark.parametrize("inline", [True, False], ids=["inline-data", "file-paths"])
async def test_gate_reads_the_label_with_a_client_certificate(
        tmp_path: Path, k8s: str, pki: dict[str, tuple[Path, Path]], inline: bool) -> None:
    conf = tmp_path / "admin.conf"
    conf.write_text(admin_conf(k8s, pki["ca"][0], *pki["admin"], inline=inline))
    env = {"SBPS_MARSHAL_NODE_GATE": "k8s-label",
           "SBPS_MARSHAL_NODE_K8S_KUBECONFIG": str(conf),
           # ignored with a kubeconfig: neither names anything that works
           "SBPS_MARSHAL_NODE_K8S_API": "https://127.0.0.1:1",
           "SBPS_MARSHAL_NODE_K8S_TOKEN_FILE": str(tmp_path / "missing")}
    gate = make_gate(load(None, env=env).config.node, "ncn-w001")
    assert isinstance(gate, K8sLabelGate)
    assert not await gate.is_open()
    label(k8s, pki["ca"][0], "sbps")
    assert await gate.is_open()
    label(k8s, pki["ca"][0], "other")
    assert not await gate.is_open()


async def test_certificate_of_another_ca_is_refused(
        tmp_path: Path, k8s: str, pki: dict[str, tuple[Path, Path]]) -> None:
    """Negative control: the fake does check client certificates (401 without a valid one)."""
    conf = tmp_path / "admin.conf"
    conf.write_text(admin_conf(k8s, pki["ca"][0], *pki["stranger"]))
    label(k8s, pki["ca"][0], "sbps")
    gate = make_gate(load(None, env={"SBPS_MARSHAL_NODE_GATE": "k8s-label",
                                     "SBPS_MARSHAL_NODE_K8S_KUBECONFIG": str(conf)}
                          ).config.node, "ncn-w001")
    with pytest.raises(SbpsError):
        await gate.is_open()


async def test_wrong_cluster_ca_fails_and_renewal_is_picked_up(
        tmp_path: Path, k8s: str, pki: dict[str, tuple[Path, Path]]) -> None:
    conf = tmp_path / "admin.conf"
    conf.write_text(admin_conf(k8s, pki["other"][0], *pki["admin"]))
    label(k8s, pki["ca"][0], "sbps")
    gate = make_gate(load(None, env={"SBPS_MARSHAL_NODE_GATE": "k8s-label",
                                     "SBPS_MARSHAL_NODE_K8S_KUBECONFIG": str(conf)}
                          ).config.node, "ncn-w001")
    with pytest.raises(SbpsError, match="certificate"):
        await gate.is_open()
    conf.write_text(admin_conf(k8s, pki["ca"][0], *pki["admin"]) + "\n")  # renewed file
    assert await gate.is_open()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("current-context: kubernetes-admin@kubernetes\n", ""),
     "current-context: missing"),
    (lambda t: t.replace("    client-key-data", "    unused-key-data"),
     "client-certificate and client-key go together"),
    (lambda t: t.replace("  user:\n", "  user:\n    exec: {command: aws}\n"),
     "credential plugins are not run"),
    (lambda t: t.replace("name: kubernetes-admin@kubernetes", "name: renamed"),
     "no entry named 'kubernetes-admin@kubernetes'"),
])
async def test_malformed_kubeconfig_names_the_field(
        tmp_path: Path, pki: dict[str, tuple[Path, Path]], edit: object,
        message: str) -> None:
    conf = tmp_path / "admin.conf"
    text = admin_conf("https://127.0.0.1:1", pki["ca"][0], *pki["admin"])
    conf.write_text(edit(text))  # type: ignore[operator]
    gate = make_gate(load(None, env={"SBPS_MARSHAL_NODE_GATE": "k8s-label",
                                     "SBPS_MARSHAL_NODE_K8S_KUBECONFIG": str(conf)}
                          ).config.node, "ncn-w001")
    with pytest.raises(UpstreamPermanentError, match=message) as info:
        await gate.is_open()
    assert str(conf) in str(info.value)
    assert b64(pki["admin"][1]) not in str(info.value)  # no key material in the message
