"""The ``rfc2136`` registrar: TSIG-signed dynamic updates (dnspython, over TCP).

Owns reading this worker's records from the server, the difference to what they should be,
and the UPDATE messages that close it: one per zone, hosts before the SRV entry that points
at them on registration, the SRV entry first on withdrawal. The SRV rrset is shared by all
workers, so only our own resource records are added or deleted. Changes to a host name
carry prerequisites that the A and TXT rrsets are still exactly as read, so a record
someone else owns (or took meanwhile) is never overwritten. Must not log the TSIG secret.
Every blocking call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.update

from sbps.config import Config
from sbps.core.errors import SbpsError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.publish.dns import records, tsig
from sbps.publish.dns.addresses import network_addresses
from sbps.publish.dns.records import NetRecords, RecordOwnership

log = logging.getLogger(__name__)

_CONFLICT = {dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET}
_ATTEMPTS = 3


def _rd(rdtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


@dataclass
class RRState:
    """One rrset as the server holds it (empty when absent)."""

    rdatas: list[dns.rdata.Rdata] = field(default_factory=list)
    ttl: int = 0

    def texts(self) -> set[str]:
        return {rd.to_text().lower() for rd in self.rdatas}

    def strings(self) -> set[str]:
        return {b"".join(rd.strings).decode(errors="replace")  # type: ignore[attr-defined]
                for rd in self.rdatas}


class Rfc2136Registrar:
    name = "rfc2136"

    def __init__(self, cfg: Config, hostname: str, *,
                 addresses: Callable[[Config], dict[str, str]] = network_addresses) -> None:
        self.cfg, self.hostname, self._addresses = cfg, hostname, addresses
        self.where = f"{cfg.dns.server}:{cfg.dns.port}"
        self._zones: dict[str, str] = {}  # name -> zone, found once per registrar
        self._lock = asyncio.Lock()

    async def ensure(self, present: bool) -> None:
        async with self._lock:
            await asyncio.to_thread(self._ensure, present)

    # -- blocking part, in a worker thread -------------------------------------------------

    def _ensure(self, present: bool) -> None:
        key = tsig.load(self.cfg.dns.tsig_key_file)
        addrs = self._addresses(self.cfg) if present else None
        recs = records.desired(self.cfg, self.hostname, addrs)
        problems: list[str] = []
        try:
            for _ in range(_ATTEMPTS):
                problems = []
                messages = self._diff(recs, present, key, problems)
                if not messages:
                    break
                try:
                    for zone, msg, summary in messages:
                        self._send(zone, msg, key)
                        log.info("dns: updated zone %s: %s", zone, "; ".join(summary),
                                 extra={"action": "dns-register" if present else
                                        "dns-withdraw", "zone": zone})
                except _Conflict as exc:
                    log.info("dns: %s; reading again", exc)
                # Read again: the next diff is empty when every message took effect.
            else:
                raise UpstreamTemporaryError(
                    f"dns: records at {self.where} still differ after {_ATTEMPTS} updates "
                    "(changed concurrently?); retrying next pass", code="dns_conflict")
        except SbpsError:
            self._zones.clear()  # a zone may have moved: find it again next time
            raise
        if problems:
            raise UpstreamPermanentError("dns: " + "; ".join(problems), code="dns_foreign")

    def _diff(self, recs: tuple[NetRecords, ...], present: bool, key: tsig.TsigKey,
              problems: list[str]) -> list[tuple[str, dns.update.UpdateMessage, list[str]]]:
        """Ordered UPDATE messages (one per zone) that bring the server to what we want."""
        first: dict[str, tuple[dns.update.UpdateMessage, list[str]]] = {}
        second: dict[str, tuple[dns.update.UpdateMessage, list[str]]] = {}

        def msg(phase: dict[str, tuple[dns.update.UpdateMessage, list[str]]],
                zone: str) -> tuple[dns.update.UpdateMessage, list[str]]:
            for existing in (first, second):
                if zone in existing:
                    return existing[zone]
            phase[zone] = (dns.update.UpdateMessage(zone, keyring=key.keyring(),
                                                    keyname=key.keyname), [])
            return phase[zone]

        for rec in recs:
            host_zone, srv_zone = self._zone(rec.host), self._zone(rec.srv_name)
            a, txt = self._read(rec.host, "A"), self._read(rec.host, "TXT")
            srv = self._read(rec.srv_name, "SRV")
            own = records.ownership(rec, {rd.to_text() for rd in a.rdatas}, txt.strings())
            if own is RecordOwnership.FOREIGN:
                problems.append(f"{rec.host} (network {rec.net}) is owned by someone else "
                                f"(A {sorted(a.texts())}, TXT {sorted(txt.strings())}); "
                                "left alone")
                continue
            want_srv = _rd("SRV", rec.srv_data)
            ours_srv = [rd for rd in srv.rdatas if records.is_ours_srv(rd.to_text(), rec)]
            owner_rd = _rd("TXT", records.quote_txt(rec.owner))
            if present:
                assert rec.address is not None
                host_changed = (a.texts() != {rec.address} or a.ttl != rec.ttl
                                or owner_rd not in txt.rdatas or txt.ttl != rec.ttl)
                new_txt = [rd for rd in txt.rdatas if rd != owner_rd] + [owner_rd]
                if host_changed:
                    m, summary = msg(first, host_zone)
                    _expect(m, rec.host, "A", a)
                    _expect(m, rec.host, "TXT", txt)
                    m.replace(rec.host, rec.ttl, _rd("A", rec.address))
                    m.replace(rec.host, rec.ttl, *new_txt)
                    summary.append(f"{own.value} {rec.host} A {rec.address}")
                stale = [rd for rd in ours_srv if rd != want_srv]
                if want_srv not in srv.rdatas or stale:
                    m, summary = msg(second, srv_zone)
                    if srv_zone == host_zone and not host_changed:
                        # Added only while the host still carries our mark (a prerequisite
                        # cannot name a record outside the message's zone: RFC 2136 3.2.5).
                        _expect(m, rec.host, "TXT", txt)
                    for rd in stale:
                        m.delete(rec.srv_name, rd)
                    if want_srv not in srv.rdatas:
                        m.add(rec.srv_name, rec.ttl, want_srv)
                    summary.append(f"{rec.srv_name} SRV +{rec.srv_data}"
                                   + "".join(f" -{rd}" for rd in stale))
            else:
                if ours_srv:
                    m, summary = msg(first, srv_zone)
                    for rd in ours_srv:
                        m.delete(rec.srv_name, rd)
                    summary.append(f"{rec.srv_name} SRV -{rec.host}")
                if own is RecordOwnership.OURS:
                    m, summary = msg(second, host_zone)
                    _expect(m, rec.host, "A", a)
                    _expect(m, rec.host, "TXT", txt)
                    m.delete(rec.host, "A")
                    m.delete(rec.host, owner_rd)
                    summary.append(f"{rec.host} A, TXT withdrawn")
        return [(zone, m, s) for phase in (first, second) for zone, (m, s) in phase.items()]

    def _zone(self, name: str) -> str:
        zone = self._zones.get(name)
        if zone is None:
            zone = self._find_zone(name)
            self._zones[name] = zone
        return zone

    def _find_zone(self, name: str) -> str:
        if self.cfg.dns.zones:
            zone = records.zone_from_list(name, self.cfg.dns.zones)
            if zone is None:
                raise UpstreamPermanentError(
                    f"dns: no zone in dns.zones {list(self.cfg.dns.zones)} contains {name}",
                    code="dns_zone")
            return zone
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.cfg.dns.server]
        resolver.port = self.cfg.dns.port
        resolver.timeout = resolver.lifetime = self.cfg.dns.timeout
        resolver.cache = None
        try:
            return dns.resolver.zone_for_name(name, tcp=True, resolver=resolver,
                                              lifetime=self.cfg.dns.timeout).to_text()
        except dns.resolver.NoRootSOA as exc:
            raise UpstreamPermanentError(f"dns: {self.where} serves no zone containing {name} "
                                         "(set dns.zones)", code="dns_zone") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise UpstreamTemporaryError(f"dns: SOA query for the zone of {name} at "
                                         f"{self.where} failed: {exc}") from exc

    def _read(self, name: str, rdtype: str) -> RRState:
        q = dns.message.make_query(name, rdtype)
        try:
            r = dns.query.tcp(q, self.cfg.dns.server, timeout=self.cfg.dns.timeout,
                              port=self.cfg.dns.port)
        except (dns.exception.DNSException, OSError) as exc:
            raise UpstreamTemporaryError(f"dns: query {name} {rdtype} at {self.where} "
                                         f"failed: {exc or type(exc).__name__}") from exc
        if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise UpstreamTemporaryError(f"dns: query {name} {rdtype} at {self.where}: "
                                         f"{dns.rcode.to_text(r.rcode())}")
        for rrset in r.answer:
            if rrset.name == dns.name.from_text(name) and \
                    rrset.rdtype == dns.rdatatype.from_text(rdtype):
                return RRState(list(rrset), rrset.ttl)
        return RRState()

    def _send(self, zone: str, msg: dns.update.UpdateMessage, key: tsig.TsigKey) -> None:
        what = f"dns: update of zone {zone} at {self.where}"
        try:
            r = dns.query.tcp(msg, self.cfg.dns.server, timeout=self.cfg.dns.timeout,
                              port=self.cfg.dns.port)
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime,
                dns.tsig.BadSignature, dns.message.UnknownTSIGKey) as exc:
            raise UpstreamPermanentError(
                f"{what} rejected: the server does not accept TSIG key {key.name!r} "
                f"({key.algorithm}): {exc} (check dns.tsig_key_file)",
                code="dns_tsig") from exc
        except dns.exception.FormError as exc:
            if "TSIG" not in str(exc):
                raise UpstreamTemporaryError(f"{what} failed: {exc}") from exc
            raise UpstreamPermanentError(f"{what} rejected: the server does not accept TSIG "
                                         f"key {key.name!r} ({key.algorithm}): {exc} (check "
                                         "dns.tsig_key_file)", code="dns_tsig") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise UpstreamTemporaryError(f"{what} failed: {exc or type(exc).__name__}") from exc
        rcode = r.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in _CONFLICT:
            raise _Conflict(f"update of zone {zone}: prerequisite failed ({text})")
        if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED, dns.rcode.NOTZONE,
                     dns.rcode.FORMERR):
            raise UpstreamPermanentError(f"{what} refused: {text} (is TSIG key {key.name!r} "
                                         "allowed to update this zone?)", code="dns_refused")
        raise UpstreamTemporaryError(f"{what}: {text}")


class _Conflict(SbpsError):
    """A prerequisite failed: someone changed the records between our read and update."""


def _expect(m: dns.update.UpdateMessage, name: str, rdtype: str, state: RRState) -> None:
    """Prerequisite: the rrset is still exactly as read (absent if it was absent)."""
    if state.rdatas:
        m.present(name, *state.rdatas)
    else:
        m.absent(name, rdtype)
