"""The sbpsctl side of the HTTP API: finding the daemon, the admin token, calling it.

Owns the URL resolution (``--url``, else the URL the daemon wrote to
``<state_dir>/http-url``, else ``http.bind``/``http.port``), reading the admin token from
the same file the daemon uses, JSON requests with urllib, the translation of HTTP and
network failures into sbps errors, and plain-text tables. Must not print secrets.
"""

from __future__ import annotations

import argparse
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.config import Config, load
from sbps.core.errors import PermanentError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.publish.http.auth import read_token, token_path
from sbps.publish.http.serve import URL_FILE, url_of


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="API base URL (default: the running daemon's, from the "
                   "configuration)")
    p.add_argument("--token-file", help="admin token file (default: http.admin_token_file "
                   "or <reconcile.state_dir>/admin-token)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@dataclass
class Api:
    url: str
    token_file: Path | None
    timeout: float = 30.0
    cafile: str | None = None

    def call(self, method: str, path: str, *, admin: bool = False, body: Any = None,
             timeout: float | None = None, ok: Sequence[int] = ()) -> tuple[int, Any]:
        """One request; returns (status, JSON body). Statuses >= 400 not in ``ok`` raise."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if admin:
            if self.token_file is None:
                raise PermanentError("no admin token file configured; use --token-file")
            headers["Authorization"] = "Bearer " + read_token(self.token_file)
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,
                                     headers=headers)
        ctx = ssl.create_default_context(cafile=self.cafile) if self.url.startswith(
            "https") else None
        where = f"{method} {self.url.rstrip('/')}{path}"
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout,
                                        context=ctx) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            doc = _decode(exc.read())
            if exc.code in ok:
                return exc.code, doc
            err = doc.get("error", {}) if isinstance(doc, dict) else {}
            msg = f"{where}: {exc.code} {err.get('code', exc.reason)}: " \
                  f"{err.get('message', '')}".rstrip(": ")
            cls = UpstreamTemporaryError if exc.code >= 500 else UpstreamPermanentError
            raise cls(msg) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpstreamTemporaryError(f"{where}: cannot reach the daemon: {reason}") \
                from exc

    def get(self, path: str, *, admin: bool = False) -> Any:
        return self.call("GET", path, admin=admin)[1]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"error": {"code": "not_json", "message": raw[:200].decode("utf-8", "replace")}}


def config_of(args: argparse.Namespace) -> Config:
    return load(getattr(args, "config", None)).config


def api(args: argparse.Namespace, url: str | None = None) -> Api:
    """The API client the command line asks for."""
    cfg = config_of(args)
    token_file = Path(args.token_file) if getattr(args, "token_file", None) else \
        token_path(cfg.http, cfg.reconcile.state_dir)
    return Api(url or args.url or default_url(cfg), token_file, args.timeout,
               cfg.http.tls_cert_file or None)


def default_url(cfg: Config) -> str:
    written = Path(cfg.reconcile.state_dir) / URL_FILE
    try:
        url = written.read_text(encoding="utf-8").strip()
    except OSError:
        url = ""
    return url or url_of(cfg.http, cfg.http.port, bool(cfg.http.tls_cert_file))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain table, columns padded to their widest cell; None shows as '-'."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


def dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)
