"""Async IMS client: list, read and create image records, set links and metadata labels.

Owns the HTTP exchange with IMS (aiohttp): URL, timeout, TLS, bearer token, and retries
with exponential backoff and jitter on connection errors, timeouts, 5xx and unreadable
JSON (an upstream outage), never on 4xx. Errors become sbps.core.errors naming the request.
Returns JSON decoded within size and depth limits (``sbps.core.decode``): in the image list an
item that cannot be decoded is replaced by its DecodeError, so one record never hides the
others (``get_record`` parses one record through ``parse``). Must not decide what to
project.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from sbps.config import CatalogConfig
from sbps.core.decode import MAX_DEPTH, DecodeError, items, loads
from sbps.core.errors import InputError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.core.model import ImageRecord, Problem
from sbps.sources.catalog.auth import TokenProvider
from sbps.sources.catalog.parse import parse_record

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_BODY = 256 * 2**20


class ImsRefused(UpstreamPermanentError):
    """IMS answered 4xx: the request is wrong or not allowed; retrying will not help."""

    code = "ims_refused"

    def __init__(self, message: str, status: int) -> None:
        code = {401: "ims_unauthorized", 403: "ims_forbidden", 404: "ims_not_found"}
        if status in (401, 403):
            message += " (check catalog.auth and its token)"
        super().__init__(message, code=code.get(status, "ims_refused"))
        self.status = status


class ImsUnavailable(UpstreamTemporaryError):
    code = "ims_unavailable"


def images_url(cfg: CatalogConfig) -> str:
    return f"{cfg.api_gateway.rstrip('/')}/{cfg.ims_uri.strip('/')}"


#: Where the platform CA reaches a CSM node: cloud-init writes it from BSS meta-data
#: (``Global."ca-certs".trusted``) and runs update-ca-certificates, so it is in the system
#: store too; a cert error names it as what to set.
PLATFORM_CA = "/etc/pki/trust/anchors/platform-ca-certs.crt"


def ssl_context(cfg: CatalogConfig) -> ssl.SSLContext | bool:
    """TLS verification is on by default; ``ca_bundle`` replaces the system store."""
    if not cfg.verify_tls:
        return False
    if cfg.ca_bundle and cfg.api_gateway.startswith("https://"):
        try:
            return ssl.create_default_context(cafile=cfg.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ImsUnavailable(f"catalog.ca_bundle {cfg.ca_bundle}: cannot load: {exc}",
                                 code="ims_tls") from exc
    return True


def tls_hint(cfg: CatalogConfig, exc: BaseException) -> str:
    """One line for an IMS certificate that did not verify: what to set."""
    store = f"catalog.ca_bundle {cfg.ca_bundle}" if cfg.ca_bundle else "the system store"
    return (f"IMS certificate not verified with {store} ({exc}): set catalog.ca_bundle "
            f"(SBPS_MARSHAL_CATALOG_CA_BUNDLE) to the CA that signed {cfg.api_gateway}; on "
            f"a CSM worker {PLATFORM_CA}")


def check_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not _SAFE_ID.match(image_id):
        raise ValueError(f"image id {image_id!r} is not a valid IMS id")
    return image_id


class ImsClient:
    """One IMS endpoint. The HTTP session is created on first use and closed by close().

    ``retries`` extra attempts follow a temporary failure, waiting about
    ``backoff * 2**n`` seconds (times a random factor in [0.5, 1.5], at most ``backoff_max``).
    """

    def __init__(self, cfg: CatalogConfig, auth: TokenProvider, *, retries: int = 3,
                 backoff: float = 0.5, backoff_max: float = 10.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.cfg = cfg
        self.url = images_url(cfg)
        self.auth = auth
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        # The certificate hint is logged once per run of failures, not on every retry.
        self._tls_logged = False

    async def __aenter__(self) -> ImsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=ssl_context(self.cfg), limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
                raise_for_status=False)
        return self._session

    async def list_images(self) -> list[Any]:
        """Every image record as decoded JSON; IMS answers a list. An item that cannot be
        decoded (too deep, not JSON) is its ``DecodeError`` in the list."""
        doc = await self.request("GET", self.url, listing=True)
        if not isinstance(doc, list):
            raise ImsUnavailable(f"IMS GET {self.url}: expected a list of images, got "
                                 f"{type(doc).__name__}", code="ims_garbage")
        return doc

    async def get_image(self, image_id: str) -> Any:
        """One image record as decoded JSON (``parse.parse_record`` makes it typed)."""
        return await self.request("GET", f"{self.url}/{check_id(image_id)}")

    async def get_record(self, image_id: str) -> ImageRecord:
        """One image record, parsed; a malformed record raises InputError naming the field."""
        parsed = parse_record(await self.get_image(image_id))
        if isinstance(parsed, Problem):
            raise InputError(parsed.obj, parsed.field, parsed.reason, code=parsed.code)
        return parsed

    async def patch_label(self, image_id: str, key: str, value: str | None) -> Any:
        """Set ``metadata[key] = value``, or remove the key when value is None."""
        if not key or any(ord(c) < 32 for c in key):
            raise ValueError(f"metadata key {key!r} is empty or has control characters")
        change: dict[str, str] = {"operation": "remove" if value is None else "set",
                                  "key": key}
        if value is not None:
            change["value"] = value
        return await self.request("PATCH", f"{self.url}/{check_id(image_id)}",
                                  body={"metadata": change})

    async def create_image(self, name: str, arch: str, link: dict[str, str] | None = None,
                           metadata: dict[str, str] | None = None) -> Any:
        """POST a new image record; IMS assigns its id. Returns the record as JSON.

        Not retried: a POST whose answer was lost may have created a record, and a
        second one would duplicate it (callers find it again by name and metadata).
        """
        if not name or any(ord(c) < 32 for c in name):
            raise ValueError(f"image name {name!r} is empty or has control characters")
        body: dict[str, Any] = {"name": name, "arch": arch}
        if link is not None:
            body["link"] = link
        if metadata is not None:
            body["metadata"] = metadata
        return await self._once("POST", self.url, body)

    async def set_link(self, image_id: str, link: dict[str, str]) -> Any:
        """PATCH the record's ``link`` (``{path, etag, type}``) to point at a manifest."""
        return await self.request("PATCH", f"{self.url}/{check_id(image_id)}",
                                  body={"link": link})

    async def request(self, method: str, url: str, *, body: Any = None,
                      listing: bool = False) -> Any:
        """One request with retries; returns the decoded JSON body (None when empty).
        ``listing`` decodes a list item by item (``sbps.core.decode.items``)."""
        attempt = 0
        while True:
            try:
                return await self._once(method, url, body, listing)
            except UpstreamTemporaryError as exc:
                if attempt >= self.retries:
                    raise
                delay = min(self.backoff_max,
                            self.backoff * 2**attempt * random.uniform(0.5, 1.5))
                attempt += 1
                log.warning("IMS request failed, retrying in %.1fs: %s", delay, exc,
                            extra={"url": url, "attempt": attempt})
                await self._sleep(delay)

    async def _once(self, method: str, url: str, body: Any, listing: bool = False) -> Any:
        what = f"IMS {method} {url}"
        headers = {"Accept": "application/json"}
        token = await self.auth.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._get_session().request(method, url, json=body,
                                                   headers=headers) as resp:
                status = resp.status
                raw = await _read_body(resp.content, _MAX_BODY + 1)
        except aiohttp.ClientConnectorCertificateError as exc:
            if not self._tls_logged:
                self._tls_logged = True
                log.error(tls_hint(self.cfg, exc.certificate_error), extra={"url": url})
            raise ImsUnavailable(f"{what}: certificate not verified: "
                                 f"{exc.certificate_error}", code="ims_tls") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ImsUnavailable(f"{what}: {reason}") from exc
        self._tls_logged = False
        if status >= 500:
            raise ImsUnavailable(f"{what}: HTTP {status}: {_snippet(raw)}")
        if status >= 400:
            if status in (401, 403):
                self.auth.invalidate()
            raise ImsRefused(f"{what}: HTTP {status}: {_snippet(raw)}", status)
        if len(raw) > _MAX_BODY:
            raise ImsUnavailable(f"{what}: answer larger than {_MAX_BODY} bytes",
                                 code="ims_garbage")
        if not raw.strip():
            return None
        try:
            if listing:
                return items(raw, "ims", "images", max_bytes=_MAX_BODY, max_depth=MAX_DEPTH)
            return loads(raw, "ims", url.rsplit("/", 1)[-1], max_bytes=_MAX_BODY)
        except DecodeError as exc:
            if exc.code in ("not_json", "not_utf8") or listing:
                # An error page of a proxy, a truncated answer: an outage of IMS.
                raise ImsUnavailable(f"{what}: answer rejected: {exc.reason}",
                                     code="ims_garbage") from exc
            raise


def _snippet(raw: bytes) -> str:
    text = raw[:200].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


async def _read_body(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes: ``StreamReader.read(n)`` returns what is
    buffered (as little as one chunk), so a catalog larger than a chunk needs a loop."""
    raw = bytearray()
    while len(raw) < limit:
        chunk = await content.read(limit - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)
