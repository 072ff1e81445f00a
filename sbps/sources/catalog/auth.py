"""Bearer tokens for IMS: none, a token file re-read on change, or a token command.

Owns getting a token and caching it. The command mode runs the SPIFFE agent the way the
field does (``spire-agent api fetch jwt -audience <aud> -output json``) and accepts either
a raw JWT or SPIRE's JSON output, a list of protobuf messages such as
``[{"svids": [{"spiffe_id": "spiffe://...", "svid": "<jwt>", "hint": ""}]},
{"bundles": {...}}]``. Must not log tokens, and must not do HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sbps.config import CatalogConfig
from sbps.config.choices import CatalogAuth
from sbps.core.decode import DecodeError, jwt_payload, loads
from sbps.core.errors import ConfigError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.core.rejections import Rejections
from sbps.sources.catalog import spire

log = logging.getLogger(__name__)

#: A token command's output (SPIRE JSON with a few SVIDs) is a few kB.
MAX_TOKEN_OUTPUT = 1 << 20

#: The largest token file read (a JWT is a few kB).
MAX_TOKEN = 64 * 2**10
#: A token whose expiry is unknown is re-fetched after this many seconds.
UNKNOWN_EXPIRY_TTL = 60.0
#: Fetch a new token this long before the cached one expires (capped at half its life).
EXPIRY_MARGIN = 60.0


class TokenProvider(Protocol):
    async def token(self) -> str | None:
        """The bearer token for the next request, or None for no Authorization header."""

    def invalidate(self) -> None:
        """Forget a cached token (IMS refused it); the next call fetches a new one."""


class NoAuth:
    async def token(self) -> str | None:
        return None

    def invalidate(self) -> None:
        return None


class TokenFile:
    """A bearer token in a file, re-read whenever the file's identity, size or mtime change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._token: str | None = None

    async def token(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise UpstreamPermanentError(
                f"catalog.token_file {self.path}: cannot read: {exc.strerror}",
                code="token_unavailable") from exc
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp or self._token is None:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    text = fh.read(MAX_TOKEN + 1).strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise UpstreamPermanentError(
                    f"catalog.token_file {self.path}: cannot read: {exc}",
                    code="token_unavailable") from exc
            if len(text) > MAX_TOKEN:
                raise UpstreamPermanentError(
                    f"catalog.token_file {self.path}: larger than {MAX_TOKEN} bytes",
                    code="token_unavailable")
            if not text or any(c.isspace() for c in text):
                raise UpstreamPermanentError(
                    f"catalog.token_file {self.path}: expected one token on one line",
                    code="token_unavailable")
            if self._stamp is not None:
                log.info("IMS token file changed; using the new token",
                         extra={"path": self.path})
            self._token, self._stamp = text, stamp
        return self._token

    def invalidate(self) -> None:
        # A refused token is only replaced by a new file: keep the stamp so an unchanged
        # file is not re-read needlessly, but drop the text to force a re-read next time.
        self._token = None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), without verifying it."""
    try:
        claims = jwt_payload(token)
    except DecodeError:  # not a JWT, or its payload is unreadable: expiry unknown
        return None
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        return float(exp)
    return None


def select_token(output: str, svid_pattern: str = "") -> str:
    """The JWT in a token command's output: a raw JWT, or SPIRE JSON (``-output json``).

    In SPIRE JSON the SVID whose ``spiffe_id`` matches ``svid_pattern`` (a regular
    expression, searched) is taken; an empty pattern takes the first SVID.
    """
    text = output.strip()
    if not text:
        raise ValueError("the command printed nothing")
    if text[0] not in "[{":
        if len(text.split()) != 1:
            raise ValueError("expected one JWT or SPIRE JSON output")
        return text
    try:
        doc = loads(text, "token", "token command output", max_bytes=MAX_TOKEN_OUTPUT)
    except DecodeError as exc:
        raise ValueError(f"output rejected: {exc.reason} ({exc.code})") from exc
    messages = doc if isinstance(doc, list) else [doc]
    svids: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("svids"), list):
            svids.extend(s for s in message["svids"] if isinstance(s, dict))
    pattern = re.compile(svid_pattern) if svid_pattern else None
    ids = []
    for svid in svids:
        spiffe_id = svid.get("spiffe_id", svid.get("spiffeId", ""))
        ids.append(str(spiffe_id))
        if pattern is not None and not pattern.search(str(spiffe_id)):
            continue
        token = svid.get("svid")
        if isinstance(token, str) and token:
            return token
    wanted = f" matching {svid_pattern!r}" if svid_pattern else ""
    raise ValueError(f"no SVID{wanted} in the output (SVIDs: {', '.join(ids) or 'none'})")


@dataclass
class _Cached:
    token: str
    refresh_at: float


class TokenCommand:
    """Runs a command that prints a token; caches it until shortly before its ``exp``."""

    def __init__(self, command: str | list[str], audience: str,
                 svid_pattern: str | Callable[[], str] = "", *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time,
                 rejections: Rejections | None = None) -> None:
        """``command`` is a shell-like string (``{audience}`` substituted per word) or an
        argument list taken as it is; ``svid_pattern`` a pattern or a function giving the
        pattern of each fetch."""
        self.rejections = rejections or Rejections()
        try:
            words = shlex.split(command) if isinstance(command, str) else list(command)
        except ValueError as exc:
            raise ConfigError("catalog.token_command", command,
                              f"not a valid command: {exc}") from None
        if not words:
            raise ConfigError("catalog.token_command", command, "a command is required")
        if isinstance(svid_pattern, str) and svid_pattern:
            try:
                re.compile(svid_pattern)
            except re.error as exc:
                raise ConfigError("catalog.token_svid_pattern", svid_pattern,
                                  f"not a regular expression: {exc}") from None
        # Substitute per word, after splitting, so an audience never becomes extra words.
        self.argv = ([w.replace("{audience}", audience) for w in words]
                     if isinstance(command, str) else words)
        self.svid_pattern = svid_pattern
        self.what = f"catalog.token_command {self.argv[0]}"
        self.timeout = timeout
        self._clock = clock
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str | None:
        async with self._lock:
            if self._cached is not None and self._clock() < self._cached.refresh_at:
                return self._cached.token
            token = await self._run()
            now = self._clock()
            exp = jwt_expiry(token)
            if exp is None:
                refresh_at = now + UNKNOWN_EXPIRY_TTL
            else:
                refresh_at = exp - min(EXPIRY_MARGIN, max(0.0, (exp - now) / 2))
            self._cached = _Cached(token, refresh_at)
            return token

    def invalidate(self) -> None:
        self._cached = None

    def pattern(self) -> str:
        """The SVID pattern of this fetch."""
        p = self.svid_pattern
        return p if isinstance(p, str) else p()

    async def _run(self) -> str:
        what = self.what
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise UpstreamTemporaryError(f"{what}: cannot run: {exc.strerror}",
                                         code="token_unavailable") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise UpstreamTemporaryError(f"{what}: no answer within {self.timeout}s",
                                         code="token_unavailable") from exc
        if proc.returncode != 0:
            # stderr of a token tool is not a secret; stdout might be, so it is never shown.
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise UpstreamTemporaryError(
                f"{what}: exited with {proc.returncode}: {tail[0][:200]}",
                code="token_unavailable")
        try:
            token = select_token(out.decode("utf-8", "replace"), self.pattern())
        except ValueError as exc:
            if isinstance(exc.__cause__, DecodeError):
                self.rejections.reject("token", exc.__cause__)
            raise UpstreamTemporaryError(f"{what}: {exc}", code="token_unavailable") from None
        self.rejections.accepted("token", "token command output")
        return token


def make_auth(cfg: CatalogConfig, rejections: Rejections | None = None) -> TokenProvider:
    """The token provider ``catalog.auth`` names."""
    if cfg.auth is CatalogAuth.TOKEN_FILE:
        if not cfg.token_file:
            raise ConfigError("catalog.token_file", cfg.token_file,
                              "a file is required when catalog.auth = \"token-file\"")
        return TokenFile(cfg.token_file)
    if cfg.auth is CatalogAuth.COMMAND:
        return TokenCommand(cfg.token_command, cfg.token_audience, cfg.token_svid_pattern,
                            timeout=cfg.timeout, rejections=rejections)
    if cfg.auth is CatalogAuth.SPIRE:
        token = TokenCommand(spire.agent_argv(cfg), cfg.token_audience,
                             functools.partial(spire.svid_pattern, cfg.spire_xname_file),
                             timeout=cfg.timeout, rejections=rejections)
        token.what = f"catalog.spire_agent {cfg.spire_agent}"
        return token
    return NoAuth()
