"""The node gate: whether this worker serves (always, a flag file, a Kubernetes label).

Owns the providers only; the reconciler sequences DNS and the TPG on their answer. A
provider that cannot answer raises a temporary error (an answer it cannot decode within
the limits of ``sbps.core.decode``, a DecodeError) and the reconciler keeps the last known
state: an API outage never drains a worker.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import aiohttp

from sbps.config import NodeConfig
from sbps.config.choices import GateMode
from sbps.core.decode import DecodeError, loads
from sbps.core.errors import UpstreamPermanentError, UpstreamTemporaryError
from sbps.core.interfaces import AlwaysOpen, Gate
from sbps.core.rejections import Rejections
from sbps.publish.kubeconfig import Kubeconfig

#: The largest Node object read from the Kubernetes API.
MAX_NODE = 4 * 2**20


class FileGate:
    """Serve while a flag file exists (``touch`` to enable, ``rm`` to drain)."""

    name = "file"

    def __init__(self, path: str) -> None:
        self.path = path

    async def is_open(self) -> bool:
        return os.path.exists(self.path)


class K8sLabelGate:
    """Serve while this worker's Kubernetes node carries the label (``iscsi=sbps``).

    Reads ``GET /api/v1/nodes/<hostname>`` with the service-account bearer token, re-read on
    every call so a rotated token is picked up; or, with ``node.k8s_kubeconfig``, as
    ``kubectl --kubeconfig`` does (the field agent: /etc/kubernetes/admin.conf, a client
    certificate), the file re-read when it changes.
    """

    name = "k8s-label"

    def __init__(self, cfg: NodeConfig, hostname: str, timeout: float = 10.0,
                 rejections: Rejections | None = None) -> None:
        self.rejections = rejections or Rejections()
        key, sep, value = cfg.gate_label.partition("=")
        if not key or not sep:
            raise UpstreamPermanentError(f"node.gate_label {cfg.gate_label!r}: expected "
                                         "key=value", code="config")
        self.key, self.value = key, value
        self.path = f"/api/v1/nodes/{hostname}"
        self.url = f"{cfg.k8s_api.rstrip('/')}{self.path}"
        self.token_file = cfg.k8s_token_file
        self.ca_file = cfg.k8s_ca_file
        self.kubeconfig = Kubeconfig(cfg.k8s_kubeconfig) if cfg.k8s_kubeconfig else None
        self.timeout = timeout

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https://"):
            return False
        return ssl.create_default_context(cafile=self.ca_file or None)

    def _request(self) -> tuple[str, dict[str, str], ssl.SSLContext | bool]:
        """The URL, headers and TLS of the next request."""
        headers = {"Accept": "application/json"}
        if self.kubeconfig is not None:
            access = self.kubeconfig.access()
            if access.token:
                headers["Authorization"] = f"Bearer {access.token}"
            return f"{access.server}{self.path}", headers, access.ssl
        try:
            token = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise UpstreamTemporaryError(f"gate: cannot read node.k8s_token_file "
                                         f"{self.token_file}: {exc.strerror}") from exc
        headers["Authorization"] = f"Bearer {token}"
        return self.url, headers, self._ssl()

    async def is_open(self) -> bool:
        url, headers, tls = self._request()
        self.url = url
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as session, \
                    session.get(self.url, headers=headers, ssl=tls) as resp:
                if resp.status in (401, 403, 404):
                    raise UpstreamPermanentError(f"gate: GET {self.url}: HTTP {resp.status}",
                                                 code="k8s_refused")
                if resp.status != 200:
                    raise UpstreamTemporaryError(f"gate: GET {self.url}: HTTP {resp.status}")
                raw = bytearray()
                while len(raw) <= MAX_NODE and (chunk := await resp.content.read(1 << 16)):
                    raw += chunk
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, ValueError) as exc:
            raise UpstreamTemporaryError(f"gate: GET {self.url}: {exc}") from exc
        # A Node object is a few kB; DecodeError (too large, too deep...) is permanent.
        try:
            node = loads(bytes(raw), "k8s", f"node {self.url}", max_bytes=MAX_NODE,
                         expect=dict)
        except DecodeError as exc:
            self.rejections.reject("k8s", exc)
            raise
        self.rejections.accepted("k8s", f"node {self.url}")
        metadata = node.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        return isinstance(labels, dict) and labels.get(self.key) == self.value


def make_gate(cfg: NodeConfig, hostname: str, rejections: Rejections | None = None) -> Gate:
    if cfg.gate is GateMode.FILE:
        return FileGate(cfg.gate_file)
    if cfg.gate is GateMode.K8S_LABEL:
        return K8sLabelGate(cfg, hostname, rejections=rejections)
    return AlwaysOpen()
