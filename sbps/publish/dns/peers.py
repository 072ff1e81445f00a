"""The fleet as DNS shows it: every worker registered under this worker's SRV name.

Owns the lookup ``sbpsctl peers check`` uses when no URL is given: the SRV records of one
network (``_sbps-<net>._tcp.<system>.<site-domain>``, the records every worker registers),
then each target host's A record, asked of ``dns.server`` (the server the registrar
updates). Read-only: never writes a record. Must not talk to the workers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from sbps.config import Config
from sbps.config.choices import DnsMode
from sbps.core.errors import ConfigError, UpstreamTemporaryError
from sbps.publish.dns.records import srv_name


@dataclass(frozen=True)
class Peer:
    host: str      # iscsi-server-id-NNN.<net>.<system>.<site-domain>.
    address: str   # its A record
    port: int      # the iSCSI portal port of its SRV record


def _ask(cfg: Config, name: str, rdtype: str) -> list[str]:
    q = dns.message.make_query(name, rdtype)
    try:
        r = dns.query.tcp(q, cfg.dns.server, timeout=cfg.dns.timeout, port=cfg.dns.port)
    except (OSError, dns.exception.DNSException) as exc:
        raise UpstreamTemporaryError(f"DNS {cfg.dns.server}:{cfg.dns.port}: {rdtype} {name}: "
                                     f"{exc}") from exc
    if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise UpstreamTemporaryError(f"DNS {cfg.dns.server}:{cfg.dns.port}: {rdtype} {name}: "
                                     f"{dns.rcode.to_text(r.rcode())}")
    want = dns.rdatatype.from_text(rdtype)
    return [rd.to_text() for rrset in r.answer if rrset.rdtype == want for rd in rrset]


def network(cfg: Config, net: str | None) -> str:
    """The network to look on: ``net``, else nmn (management) if registered, else the
    first of ``dns.networks``."""
    if cfg.dns.mode is DnsMode.OFF:
        raise ConfigError("dns.mode", "off", "peers are found from the DNS records the "
                          "workers register; with dns.mode off, give the workers' URLs")
    if net is not None:
        if net not in cfg.dns.networks:
            raise ConfigError("--network", net, "one of dns.networks: "
                              + ", ".join(cfg.dns.networks))
        return net
    return "nmn" if "nmn" in cfg.dns.networks else cfg.dns.networks[0]


def find(cfg: Config, net: str) -> list[Peer]:
    """Every worker registered on ``net``, sorted by host name."""
    peers = []
    for data in _ask(cfg, srv_name(cfg, net), "SRV"):
        parts = data.split()
        if len(parts) != 4 or not parts[2].isdigit():
            continue
        host = parts[3].lower()
        for address in _ask(cfg, host, "A"):
            peers.append(Peer(host, address, int(parts[2])))
    return sorted(set(peers), key=lambda p: (p.host, p.address))
