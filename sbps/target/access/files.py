"""Reading the access policy's files: the tenant map (re-read when it changes) and CHAP
credentials (read every pass, so a rotated secret applies on the next pass).

Owns file formats and their validation; every error names the file and the entry, never a
secret's value. ``AccessSource`` is the reconciler's handle: it keeps the last good tenant
map, so a map another system is rewriting (or wrote badly) never revokes access on doubt.
Must not log a secret, and must not be called from the event loop (it reads files).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbps.config import TargetConfig
from sbps.config.choices import BackendKind, Untenanted
from sbps.core.decode import DecodeError, loads, loads_toml
from sbps.core.errors import ConfigError
from sbps.core.model import DesiredImage
from sbps.core.rejections import Rejections
from sbps.core.target_state import AccessMode, AccessSpec, Chap, Secret
from sbps.target.access.policy import (
    ChapFiles,
    Policy,
    Tenant,
    TenantMap,
    attributes,
    chap_sources,
    spec,
    unknown_tenants,
)

log = logging.getLogger(__name__)

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME_RE = re.compile(r"^(iqn|eui|naa)\.[^\s*]{1,219}\*?$")
_TENANT_KEYS = ("initiators", "chap_user_file", "chap_secret_file", "chap_mutual_user_file",
                "chap_mutual_secret_file")


def check_pattern(pattern: str, where: str) -> str:
    """An initiator name (iqn./eui./naa.), or such a prefix ending in ``*``."""
    if not isinstance(pattern, str) or not _NAME_RE.match(pattern) or any(
            ord(c) < 33 for c in pattern):
        raise ConfigError(where, pattern, "expected an initiator name (iqn./eui./naa.) or a "
                          "prefix of one ending in *")
    return pattern


def read_chap(files: ChapFiles) -> Chap:
    """The credentials in ``files``. ConfigError (naming the file, not the value) when a
    file is unreadable, a user is not a plain name, or a secret is not 12..255 characters
    without spaces; the mutual secret must differ from the one-way secret."""
    user = _read_value(files.user_file, files.key, secret=False)
    secret = _read_value(files.secret_file, files.key, secret=True)
    mutual_user = mutual_secret = ""
    if files.mutual_user_file:
        mutual_user = _read_value(files.mutual_user_file, files.key, secret=False)
        mutual_secret = _read_value(files.mutual_secret_file, files.key, secret=True)
        if mutual_secret == secret:
            raise ConfigError(files.key, files.mutual_secret_file, "the mutual CHAP secret "
                              "must differ from the one-way secret (RFC 7143)")
    return Chap(user, Secret(secret), mutual_user,
                Secret(mutual_secret) if mutual_secret else None)


def _read_value(path: str, key: str, *, secret: bool) -> str:
    try:
        value = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(key, path, f"cannot read: {reason}") from None
    if secret:
        if not 12 <= len(value) <= 255 or any(c.isspace() or ord(c) < 32 for c in value):
            raise ConfigError(key, path, "the secret (not shown) must be 12..255 characters "
                              "without spaces")
    elif not re.fullmatch(r"[0-9A-Za-z._:@-]{1,255}", value):
        raise ConfigError(key, path, "the CHAP user must be 1..255 characters of "
                          "A-Z a-z 0-9 . _ : @ -")
    return value


def parse_tenant_map(path: str, data: dict[str, Any]) -> TenantMap:
    """Validate the map's content (TOML or JSON, same shape; see docs/access.md)."""
    unknown = sorted(set(data) - {"nodes", "tenants"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}", None, "unknown key; the map has "
                          "nodes and tenants", show_value=False)
    nodes = data.get("nodes", [])
    if not isinstance(nodes, list):
        raise ConfigError(f"{path}: nodes", nodes, "expected a list of initiator names")
    for n in nodes:
        if check_pattern(n, f"{path}: nodes").endswith("*"):
            raise ConfigError(f"{path}: nodes", n, "nodes are exact names, not prefixes")
    raw = data.get("tenants", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: tenants", raw, "expected a table of tenants")
    tenants = {}
    for name, body in raw.items():
        where = f"{path}: tenants.{name}"
        if not _TENANT_RE.match(name):
            raise ConfigError(where, name, "a tenant name is 1..64 of A-Z a-z 0-9 . _ -")
        if not isinstance(body, dict):
            raise ConfigError(where, body, "expected a table with initiators")
        bad = sorted(set(body) - set(_TENANT_KEYS))
        if bad:
            raise ConfigError(f"{where}.{bad[0]}", None, "unknown key; known: "
                              + ", ".join(_TENANT_KEYS), show_value=False)
        patterns = body.get("initiators", [])
        if not isinstance(patterns, list):
            raise ConfigError(f"{where}.initiators", patterns, "expected a list")
        tenants[name] = Tenant(name, tuple(check_pattern(p, f"{where}.initiators")
                                           for p in patterns),
                               _tenant_chap(path, where, body))
    return TenantMap(tenants, tuple(nodes))


def _tenant_chap(path: str, where: str, body: dict[str, Any]) -> ChapFiles | None:
    files = [body.get(k, "") for k in _TENANT_KEYS[1:]]
    if not any(files):
        return None
    if not all(isinstance(f, str) for f in files) or not (files[0] and files[1]) or \
            bool(files[2]) != bool(files[3]):
        raise ConfigError(f"{where}.chap_secret_file", None, "chap_user_file and "
                          "chap_secret_file go together (and so do the mutual pair)",
                          show_value=False)
    base = os.path.dirname(os.path.abspath(path))
    full = [os.path.join(base, f) if f else "" for f in files]
    return ChapFiles(full[0], full[1], full[2], full[3], key=f"{where}.chap_user_file")


def load_tenant_map(path: str, rejections: Rejections | None = None) -> TenantMap:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("target.tenant_map_file", path, f"cannot read: {exc.strerror}",
                          ) from None
    try:
        data = loads(raw, "tenant_map", path, expect=dict) if path.endswith(".json") \
            else loads_toml(raw, "tenant_map", path)
    except DecodeError as exc:  # too large, too deep, not UTF-8, not JSON/TOML, not a table
        if rejections is not None:
            rejections.reject("tenant_map", exc)
        raise ConfigError("target.tenant_map_file", path, f"not valid "
                          f"{'JSON' if path.endswith('.json') else 'TOML'}: {exc.reason} "
                          f"({exc.code})") from None
    if rejections is not None:
        rejections.accepted("tenant_map", path)
    return parse_tenant_map(path, data)


def policy_from_config(t: TargetConfig, tenants: TenantMap | None = None) -> Policy:
    chap = None
    if t.chap_user_file:
        chap = ChapFiles(t.chap_user_file, t.chap_secret_file, t.chap_mutual_user_file,
                         t.chap_mutual_secret_file)
    return Policy(mode=t.access, initiators=t.initiators,
                  untenanted_shared=t.untenanted is Untenanted.SHARED,
                  tenants=tenants or TenantMap(), chap=chap,
                  masking=t.backend is not BackendKind.TGT)


@dataclass(frozen=True)
class _Seen:
    stamp: tuple[int, int, int]
    tenants: TenantMap


class AccessSource:
    """The policy as configured, with the tenant map re-read when its file changes. Keeps
    the last good map when the file turns unreadable or invalid (logged); raises only when
    no good map was ever read."""

    def __init__(self, target: TargetConfig, rejections: Rejections | None = None) -> None:
        self.target = target
        self.rejections = rejections
        self._seen: _Seen | None = None
        self._unknown: tuple[str, ...] = ()
        #: The policy of the latest ``policy()`` call, for readers on the event loop (the
        #: catalog API): replaced, never mutated, so it needs no lock and no file access.
        #: Before the first pass it has no tenants, so it shows less, never more.
        self.last: Policy = policy_from_config(target)

    def policy(self) -> Policy:
        self.last = self._policy()
        return self.last

    def _policy(self) -> Policy:
        path = self.target.tenant_map_file
        if not path or self.target.access is not AccessMode.ACL:
            return policy_from_config(self.target)
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._seen is None or self._seen.stamp != stamp:
                tenants = load_tenant_map(path, self.rejections)
                self._seen = _Seen(stamp, tenants)
                log.info("tenant map read: %d tenants, %d nodes", len(tenants.tenants),
                         len(tenants.nodes), extra={"path": path})
        except (OSError, ConfigError) as exc:
            if self._seen is None:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError("target.tenant_map_file", path,
                                  f"cannot read: {exc.strerror}") from None
            log.warning("tenant map unusable, keeping the last good one: %s", exc,
                        extra={"path": path})
        assert self._seen is not None
        return policy_from_config(self.target, self._seen.tenants)

    def current(self, desired: Iterable[DesiredImage]
                ) -> tuple[AccessSpec, tuple[tuple[str, str], ...]]:
        """The access spec and TPG attributes for this pass (reads the files)."""
        images = tuple(desired)
        pol = self.policy()
        credentials = {files: read_chap(files) for files in chap_sources(pol)}
        unknown = unknown_tenants(pol, images)
        if unknown != self._unknown:
            self._unknown = unknown
            if unknown:
                log.warning("images labelled with tenants the map does not know are "
                            "readable by nobody: %s", ", ".join(unknown))
        access = spec(pol, images, credentials)
        return access, attributes(access)
