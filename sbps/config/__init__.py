"""Configuration of the marshal and of sbpsctl: one frozen, typed object, validated once.

Owns nothing itself; it re-exports the definition (``schema``), the loader (``load``) and
the renderers (``render``). Configuration is read only by the composition roots (the
daemon and the CLI) and then passed down explicitly; no module reads it at import.
"""

from sbps.config.load import Key, Loaded, keys, load, parse_duration, parse_size
from sbps.config.schema import (
    DEFAULT_PATH,
    ENV_PREFIX,
    CatalogConfig,
    Config,
    DnsConfig,
    HttpConfig,
    LogConfig,
    NodeConfig,
    ReconcileConfig,
    S3Config,
    StageConfig,
    TargetConfig,
)

__all__ = [
    "DEFAULT_PATH", "ENV_PREFIX", "CatalogConfig", "Config", "DnsConfig", "HttpConfig", "Key",
    "Loaded", "LogConfig", "NodeConfig", "ReconcileConfig", "S3Config", "StageConfig",
    "TargetConfig", "keys", "load", "parse_duration", "parse_size",
]
