"""The closed sets of values some configuration keys take: one str-valued enum per choice.

Owns the members and their order (the order is the one documented in the example file and
the README reference). The values are the text written in TOML and the environment, so a
member compares and prints as its text. The access mode, the PE identity and the log
level and format belong to ``sbps.core`` (the model and logging use them); they are
re-exported here beside the others.
Must not import anything of sbps but ``core``.
"""

from __future__ import annotations

import enum

from sbps.core.identity import PeMode
from sbps.core.logs import LogFormat, LogLevel
from sbps.core.target_state import AccessMode


class GateMode(enum.StrEnum):
    """``node.gate``: when this worker serves."""

    ALWAYS = "always"
    FILE = "file"
    K8S_LABEL = "k8s-label"


class CatalogAuth(enum.StrEnum):
    """``catalog.auth``: how IMS requests authenticate."""

    NONE = "none"
    TOKEN_FILE = "token-file"
    COMMAND = "command"
    SPIRE = "spire"


class Untagged(enum.StrEnum):
    """``catalog.untagged``: records with no metadata at all."""

    SKIP = "skip"
    PROJECT = "project"


class Rules(enum.StrEnum):
    """``catalog.rules``: which IMS records and PE objects are projected (docs/upgrade.md)."""

    STRICT = "strict"
    FIELD = "field"


class PeImages(enum.StrEnum):
    """``catalog.pe``: which PE images under PE/ are projected."""

    ALL = "all"
    LABELLED = "labelled"
    OFF = "off"


class S3Proto(enum.StrEnum):
    """``s3.proto``: the scheme of the S3 endpoint when only its host is given."""

    HTTP = "http"
    HTTPS = "https"


class Verify(enum.StrEnum):
    """``stage.verify``: what happens to an image that cannot be verified."""

    STRICT = "strict"
    BEST_EFFORT = "best-effort"


class BackendKind(enum.StrEnum):
    """``target.backend``: kernel LIO or userspace tgtd."""

    LIO = "lio"
    TGT = "tgt"


class Allocation(enum.StrEnum):
    """``target.lun_allocation``: claim objects in S3, or hash and local journal only."""

    CLAIMS = "claims"
    HASH = "hash"


class Untenanted(enum.StrEnum):
    """``target.untenanted``: who reads images without a tenant label."""

    SHARED = "shared"
    LISTED = "listed"


class DnsMode(enum.StrEnum):
    """``dns.mode``: how SRV and A records are registered."""

    OFF = "off"
    RFC2136 = "rfc2136"
    PDNS = "pdns"


__all__ = ["AccessMode", "Allocation", "BackendKind", "CatalogAuth", "DnsMode", "GateMode",
           "LogFormat", "LogLevel", "PeImages", "PeMode", "Rules", "S3Proto", "Untagged",
           "Untenanted", "Verify"]
