"""A kubeconfig file read as ``kubectl --kubeconfig FILE`` reads it, for the node gate.

Owns reading the file's current context: the cluster's server URL and CA
(``certificate-authority-data`` or ``certificate-authority``, or
``insecure-skip-tls-verify``), and the user's credentials: a client certificate and key
(``client-certificate-data``/``client-key-data``, base64 PEM, or the ``client-certificate``/
``client-key`` file paths, relative to the kubeconfig's directory as kubectl takes them) or a
bearer ``token``/``tokenFile``. The field agent's gate reads ``/etc/kubernetes/admin.conf``
(kubeadm's: inline client certificate). The result is cached until the file changes (a
renewed admin.conf is picked up). Must not log key material, and must not do HTTP; exec and
auth-provider plugins are refused, not run.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.core.errors import UpstreamPermanentError, UpstreamTemporaryError

#: A kubeconfig is a few kB (admin.conf with its inline certificates about 6 kB).
MAX_KUBECONFIG = 1 << 20
_CODE = "kubeconfig"


@dataclass(frozen=True)
class KubeAccess:
    """Where and how to reach the API server named by a kubeconfig's current context."""

    server: str
    ssl: ssl.SSLContext | bool
    token: str | None
    context: str


def _bad(path: str, field: str, reason: str) -> UpstreamPermanentError:
    return UpstreamPermanentError(f"node.k8s_kubeconfig {path}: {field}: {reason}", code=_CODE)


def _named(doc: dict[str, Any], path: str, section: str, name: str, inner: str
           ) -> dict[str, Any]:
    """The ``inner`` mapping of the entry called ``name`` in the list ``section``."""
    entries = doc.get(section)
    if not isinstance(entries, list):
        raise _bad(path, section, "missing or not a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(inner)
            if not isinstance(body, dict):
                raise _bad(path, f"{section}[{name}].{inner}", "missing or not a mapping")
            return body
    raise _bad(path, section, f"no entry named {name!r}")


def _text(body: dict[str, Any], key: str, path: str, where: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(path, f"{where}.{key}", "not a string")
    return value


def _pem(body: dict[str, Any], key: str, path: str, where: str, base: Path) -> bytes | None:
    """Inline ``<key>-data`` (base64) wins over the file ``<key>``, as in kubectl."""
    data = _text(body, f"{key}-data", path, where)
    if data is not None:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(path, f"{where}.{key}-data", "not base64") from None
    name = _text(body, key, path, where)
    if name is None:
        return None
    try:
        return (base / name).read_bytes()
    except OSError as exc:
        raise UpstreamTemporaryError(f"node.k8s_kubeconfig {path}: {where}.{key} "
                                     f"{base / name}: {exc.strerror}", code=_CODE) from exc


def _client_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes, path: str) -> None:
    """Load a client certificate and key given as bytes: SSLContext reads files only, so
    they pass through one private (0600) temporary file that is removed at once."""
    with tempfile.NamedTemporaryFile(prefix="sbps-kube-", suffix=".pem") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(cert.rstrip(b"\n") + b"\n" + key)
        fh.flush()
        try:
            ctx.load_cert_chain(fh.name)
        except (ssl.SSLError, ValueError) as exc:
            raise _bad(path, "client certificate and key", f"cannot load: {exc}") from None


def parse(text: str, path: str) -> KubeAccess:
    """The access of the current context of a kubeconfig's text (``path`` names it in
    errors and anchors relative file names)."""
    # Imported here: only a gate with a kubeconfig needs YAML, so a daemon without one runs
    # where PyYAML is not installed (the real-kernel lane's guest, other distributions).
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _bad(path, "document", f"not YAML: {exc}".splitlines()[0]) from None
    if not isinstance(doc, dict):
        raise _bad(path, "document", "not a mapping")
    base = Path(path).parent
    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise _bad(path, "current-context", "missing")
    context = _named(doc, path, "contexts", current, "context")
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if not isinstance(cluster_name, str) or not isinstance(user_name, str):
        raise _bad(path, f"contexts[{current}]", "needs a cluster and a user")
    cluster = _named(doc, path, "clusters", cluster_name, "cluster")
    where = f"clusters[{cluster_name}]"
    server = _text(cluster, "server", path, where)
    if server is None or not server.startswith(("https://", "http://")):
        raise _bad(path, f"{where}.server", "missing or not an http(s) URL")
    user = _named(doc, path, "users", user_name, "user")
    uwhere = f"users[{user_name}]"
    for plugin in ("exec", "auth-provider"):
        if plugin in user:
            raise _bad(path, f"{uwhere}.{plugin}", "credential plugins are not run; use a "
                       "client certificate or a token")
    ca = _pem(cluster, "certificate-authority", path, where, base)
    ctx: ssl.SSLContext | bool = False
    if server.startswith("https://"):
        if cluster.get("insecure-skip-tls-verify") is True:
            plain = ssl.create_default_context()
            plain.check_hostname = False
            plain.verify_mode = ssl.CERT_NONE
            ctx = plain
        else:
            try:
                ctx = ssl.create_default_context(
                    cadata=ca.decode("ascii", "replace") if ca is not None else None)
            except ssl.SSLError as exc:
                raise _bad(path, f"{where}.certificate-authority", f"cannot load: {exc}"
                           ) from None
    cert = _pem(user, "client-certificate", path, uwhere, base)
    key = _pem(user, "client-key", path, uwhere, base)
    if (cert is None) != (key is None):
        raise _bad(path, uwhere, "client-certificate and client-key go together")
    if cert is not None and key is not None:
        if not isinstance(ctx, ssl.SSLContext):
            raise _bad(path, f"{where}.server", "a client certificate needs https")
        _client_chain(ctx, cert, key, path)
    token = _text(user, "token", path, uwhere)
    token_file = _text(user, "tokenFile", path, uwhere)
    if token is None and token_file is not None:
        try:
            token = (base / token_file).read_text().strip() or None
        except OSError as exc:
            raise UpstreamTemporaryError(f"node.k8s_kubeconfig {path}: {uwhere}.tokenFile: "
                                         f"{exc.strerror}", code=_CODE) from exc
    if cert is None and token is None:
        raise _bad(path, uwhere, "no client certificate and no token")
    return KubeAccess(server.rstrip("/"), ctx, token, current)


class Kubeconfig:
    """A kubeconfig file, parsed again whenever its identity, size or mtime change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._access: KubeAccess | None = None

    def access(self) -> KubeAccess:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise UpstreamTemporaryError(f"node.k8s_kubeconfig {self.path}: cannot read: "
                                         f"{exc.strerror}", code=_CODE) from exc
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._access is None or stamp != self._stamp:
            if st.st_size > MAX_KUBECONFIG:
                raise _bad(self.path, "document", f"larger than {MAX_KUBECONFIG} bytes")
            try:
                text = Path(self.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UpstreamTemporaryError(f"node.k8s_kubeconfig {self.path}: cannot "
                                             f"read: {exc}", code=_CODE) from exc
            self._access, self._stamp = parse(text, self.path), stamp
        return self._access
