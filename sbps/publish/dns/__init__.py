"""DNS registration of this worker's SRV and A records.

Owns the choice of registrar by ``dns.mode`` (off, RFC 2136 with TSIG, PowerDNS API); the
implementations live in ``rfc2136`` and ``pdns``, the records in ``records``. Touches only
records this worker owns. Must not block projection on failure: every registrar raises
sbps errors that the reconciler reports and retries.
"""

from __future__ import annotations

from sbps.config import Config
from sbps.config.choices import DnsMode
from sbps.core.errors import ConfigError
from sbps.core.interfaces import NoDns, Registrar
from sbps.core.rejections import Rejections
from sbps.publish.dns import records
from sbps.publish.dns.pdns import PdnsRegistrar
from sbps.publish.dns.rfc2136 import Rfc2136Registrar


def make_registrar(cfg: Config, hostname: str,
                   rejections: Rejections | None = None) -> Registrar:
    """The registrar for ``dns.mode``. Builds objects only: no I/O until ``ensure``.

    Checks what can be checked without the network (names, server id, configured
    addresses) so a bad configuration is reported at start, not at the first pass.
    """
    if cfg.dns.mode is DnsMode.OFF:
        return NoDns()
    records.desired(cfg, hostname)
    for net in cfg.dns.networks:
        configured = str(getattr(cfg.dns, f"{net}_address", "")).strip()
        if configured:
            records.check_address(f"dns.{net}_address", configured)
    if cfg.dns.mode is DnsMode.RFC2136:
        return Rfc2136Registrar(cfg, hostname)
    if cfg.dns.mode is DnsMode.PDNS:
        return PdnsRegistrar(cfg, hostname, rejections=rejections)
    raise ConfigError("dns.mode", cfg.dns.mode, "one of off, rfc2136, pdns")


__all__ = ["PdnsRegistrar", "Rfc2136Registrar", "make_registrar"]
