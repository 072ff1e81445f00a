"""Identity of an image: its key, SHA-224 digest, product id, serial and WWID; target IQN.

Owns the rules that make every worker (and the field initiators) derive the same names:
rootfs key ``<s3 rootfs path>|<etag>``; PE key ``s3://<bucket>/PE/<name>`` in legacy mode
or ``<path>|<etag>`` in content mode. Pure functions; must not do I/O.
"""

from __future__ import annotations

import enum
import hashlib
import re

from sbps.core.model import Identity, S3Url

IQN_PREFIX = "iqn.2023-06.csm.iscsi"
_IQN_RE = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]+)?$")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


class PeMode(enum.StrEnum):
    LEGACY = "legacy"
    CONTENT = "content"


def digest(key: str) -> str:
    """SHA-224 hex digest of an identity key (UTF-8)."""
    return hashlib.sha224(key.encode("utf-8")).hexdigest()


def from_key(key: str) -> Identity:
    return Identity(key=key, digest=digest(key))


def rootfs_key(path: str | S3Url, etag: str) -> str:
    """Key of an IMS rootfs: its S3 path and etag (without quotes) as in the manifest."""
    return f"{path}|{etag.strip(chr(34))}"


def rootfs(path: str | S3Url, etag: str) -> Identity:
    return from_key(rootfs_key(path, etag))


def pe_key(url: S3Url, etag: str, mode: PeMode = PeMode.LEGACY) -> str:
    """Key of a PE image. Legacy mode keys by path only, as existing PE clients expect."""
    if mode is PeMode.LEGACY:
        return str(url)
    return rootfs_key(url, etag)


def pe(url: S3Url, etag: str, mode: PeMode = PeMode.LEGACY) -> Identity:
    return from_key(pe_key(url, etag, mode))


def target_iqn(hostname: str, prefix: str = IQN_PREFIX) -> str:
    """This worker's target IQN, ``<prefix>:<hostname>``; both parts are validated."""
    if not _HOST_RE.match(hostname):
        raise ValueError(f"hostname {hostname!r} is not a valid host name")
    iqn = f"{prefix}:{hostname}"
    if not _IQN_RE.match(iqn) or len(iqn) > 223:
        raise ValueError(f"IQN {iqn!r} is not a valid iSCSI qualified name")
    return iqn
