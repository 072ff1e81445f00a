"""The DNS records this worker should have, and how to tell ours from anyone else's.

Owns the names and data (SRV ``_sbps-<net>._tcp.<system>.<site-domain>.``, the
``iscsi-server-id-NNN.<net>.<system>.<site-domain>.`` host with its A record and owner TXT
record), the ownership rule applied to what a server holds, and the choice of a zone from a
configured list. Pure: no network, no files; addresses are passed in. Must not talk to a
DNS server (``rfc2136`` and ``pdns`` do that).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from sbps.config import Config
from sbps.core.errors import ConfigError

OWNER_PREFIX = "sbps-owner="
_WORKER = re.compile(r"^ncn-w(\d+)$")


@dataclass(frozen=True)
class NetRecords:
    """One network's records of this worker. Names are absolute (trailing dot).

    ``address`` is None when it is not needed (withdrawal never reads interfaces).
    """

    net: str
    srv_name: str
    srv_data: str
    host: str
    owner: str
    ttl: int
    address: str | None = None


class RecordOwnership(enum.Enum):
    FREE = "free"          # no A record and no owner mark: ours to create
    OURS = "ours"          # carries our owner TXT
    ADOPTABLE = "adoptable"  # unmarked, and its A record is exactly what we would write
    FOREIGN = "foreign"    # someone else's: never touched


def server_id(cfg: Config, hostname: str) -> str:
    """NNN of ``iscsi-server-id-NNN``: ``node.server_id``, else the digits of ``ncn-wNNN``."""
    configured = cfg.node.server_id.strip()
    if configured:
        if not configured.isdigit():
            raise ConfigError("node.server_id", configured, "digits only (the NNN of "
                              "iscsi-server-id-NNN)")
        return configured.zfill(3)
    m = _WORKER.match(hostname)
    if m is None:
        raise ConfigError("node.server_id", "", f"required: the hostname {hostname!r} is not "
                          "of the form ncn-wNNN, so NNN cannot be derived from it")
    return m.group(1)


def owner_text(hostname: str) -> str:
    return f"{OWNER_PREFIX}{hostname}"


def _domain(cfg: Config) -> str:
    for key, value in (("node.system_name", cfg.node.system_name),
                       ("node.site_domain", cfg.node.site_domain)):
        if not value.strip(". "):
            raise ConfigError(key, value, "required for DNS registration (dns.mode is "
                              f"{cfg.dns.mode})")
    # Lower case: PowerDNS keys rrsets by canonical (lower-case) names.
    return f"{cfg.node.system_name.strip('.')}.{cfg.node.site_domain.strip('.')}.".lower()


def srv_name(cfg: Config, net: str) -> str:
    """The SRV name every worker registers on ``net`` (absolute)."""
    return f"_sbps-{net}._tcp.{_domain(cfg)}"


def portal_port(cfg: Config, address: str | None) -> int:
    """The port of the portal on ``address`` if one is configured, else ``target.port``."""
    for portal in cfg.target.portals:
        host, sep, port = portal.rpartition(":")
        if sep and host.strip("[]") == address and port.isdigit():
            return int(port)
    return cfg.target.port


def check_address(key: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise ConfigError(key, value, "an IPv4 address (A records are registered)") from exc


def desired(cfg: Config, hostname: str,
            addresses: dict[str, str] | None = None) -> tuple[NetRecords, ...]:
    """This worker's records, one entry per ``dns.networks``; ``addresses`` maps a network
    to this worker's address on it (only needed to register)."""
    domain = _domain(cfg)
    nnn = server_id(cfg, hostname)
    out = []
    for net in cfg.dns.networks:
        address = (addresses or {}).get(net)
        host = f"iscsi-server-id-{nnn}.{net}.{domain}"
        out.append(NetRecords(
            net=net, srv_name=srv_name(cfg, net),
            srv_data=f"1 0 {portal_port(cfg, address)} {host}", host=host,
            owner=owner_text(hostname), ttl=cfg.dns.ttl, address=address))
    return tuple(out)


def srv_target(data: str) -> str:
    """The target host of SRV data text (``prio weight port target``), lower-cased."""
    parts = data.split()
    return parts[3].lower() if len(parts) == 4 else ""


def is_ours_srv(data: str, rec: NetRecords) -> bool:
    """An SRV entry is this worker's when it points at this worker's host name."""
    return srv_target(data) == rec.host.lower()


def ownership(rec: NetRecords, a_values: set[str], txt_values: set[str]) -> RecordOwnership:
    """Classify a host name from its A addresses and TXT strings as the server holds them."""
    owners = {t for t in txt_values if t.startswith(OWNER_PREFIX)}
    if rec.owner in owners:
        return RecordOwnership.OURS if len(owners) == 1 else RecordOwnership.FOREIGN
    if owners:
        return RecordOwnership.FOREIGN
    if not a_values:
        return RecordOwnership.FREE
    if rec.address is not None and a_values == {rec.address}:
        return RecordOwnership.ADOPTABLE
    return RecordOwnership.FOREIGN


def zone_from_list(name: str, zones: tuple[str, ...]) -> str | None:
    """The longest configured zone that contains ``name`` (absolute, case-insensitive)."""
    name = name.lower().rstrip(".") + "."
    best: str | None = None
    for zone in zones:
        z = zone.lower().strip(".") + "."
        if (name == z or name.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


def quote_txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
