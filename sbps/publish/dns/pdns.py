"""The ``pdns`` registrar: this worker's records through the PowerDNS HTTP API (aiohttp).

Owns the API calls (zones, rrsets, PATCH), their error translation, and the
read-modify-write loop. PowerDNS has no conditional write and ``REPLACE`` replaces a whole
rrset, so every change reads the rrset, merges this worker's entries into what is there,
writes, waits a moment, and reads back; it repeats (bounded, with jitter) until this
worker's entries are as wanted and every entry of anyone else that it read is still
present. A write that loses a race in the remaining window is repaired by the next pass
(each pass re-checks). Must not log the API key; must not touch entries that are not ours.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.exception
import dns.rdata
import dns.rdataclass

from sbps.config import Config
from sbps.core.decode import DecodeError, loads
from sbps.core.errors import InputError, UpstreamPermanentError, UpstreamTemporaryError
from sbps.core.rejections import Rejections
from sbps.publish.dns import records
from sbps.publish.dns.addresses import network_addresses
from sbps.publish.dns.records import NetRecords, RecordOwnership

log = logging.getLogger(__name__)

ATTEMPTS = 6
Rrsets = dict[tuple[str, str], dict[str, Any]]
StepHook = Callable[[str, str], Awaitable[None]]


def _norm(rdtype: str, content: str) -> str:
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, content).to_text().lower()
    except (dns.exception.DNSException, ValueError):
        return content.strip().lower()


def _contents(rrset: dict[str, Any] | None, rdtype: str) -> dict[str, dict[str, Any]]:
    """Normalised content -> record dict (kept whole, so ``disabled`` survives rewrites)."""
    if rrset is None:
        return {}
    return {_norm(rdtype, r["content"]): r for r in rrset.get("records", [])}


def _txt_strings(recs: dict[str, dict[str, Any]]) -> set[str]:
    out = set()
    for content in recs:
        rd = dns.rdata.from_text(dns.rdataclass.IN, "TXT", content)
        out.add(b"".join(rd.strings).decode(errors="replace"))  # type: ignore[attr-defined]
    return out


class _ServerError(UpstreamTemporaryError):
    """A 5xx answer (a backend busy with a concurrent write answers so): worth retrying."""


class _Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.base}{path}"
        try:
            async with self.session.request(method, url, json=body) as resp:
                text = await resp.text()
                if resp.status < 300:
                    return loads(text, "pdns", f"{method} {url}") if text else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamTemporaryError(f"dns: PowerDNS API {method} {url} failed: "
                                         f"{exc or type(exc).__name__}") from exc
        detail = text[:200].replace("\n", " ")
        if resp.status in (401, 403):
            raise UpstreamPermanentError(f"dns: PowerDNS API {method} {url}: HTTP "
                                         f"{resp.status}: the API key (dns.pdns_api_key_file) "
                                         "was rejected", code="dns_refused")
        if resp.status < 500:
            raise UpstreamPermanentError(f"dns: PowerDNS API {method} {url}: HTTP "
                                         f"{resp.status}: {detail}", code="dns_refused")
        raise _ServerError(f"dns: PowerDNS API {method} {url}: HTTP {resp.status}: {detail}")

    async def rrsets(self, zone: str) -> Rrsets:
        data = await self.call("GET", f"/zones/{zone}")
        return {(r["name"].lower(), r["type"]): r for r in _rrsets(data, zone)}

    async def patch(self, zone: str, rrsets: list[dict[str, Any]]) -> bool:
        """False when the server failed (5xx): the caller reads again and retries."""
        try:
            await self.call("PATCH", f"/zones/{zone}", {"rrsets": rrsets})
        except _ServerError as exc:
            log.info("%s; reading again", exc)
            return False
        return True


def _rrsets(data: Any, zone: str) -> list[dict[str, Any]]:
    """The rrsets of a zone answer, every field the registrar reads checked for its type."""
    where = f"zone {zone}"
    sets = data.get("rrsets", []) if isinstance(data, dict) else None
    if not isinstance(sets, list):
        raise DecodeError("pdns", where, "expected an object with a list of rrsets",
                          code="wrong_type")
    for n, r in enumerate(sets):
        ok = (isinstance(r, dict) and isinstance(r.get("name"), str)
              and isinstance(r.get("type"), str)
              and isinstance(r.get("ttl", 0), int) and isinstance(r.get("records", []), list)
              and all(isinstance(x, dict) and isinstance(x.get("content"), str)
                      for x in r.get("records", [])))
        if not ok:
            raise DecodeError("pdns", f"{where} rrsets[{n}]", "expected name, type, ttl "
                              "and records with string contents", code="wrong_type")
    return sets


def _zone_names(data: Any) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(z, dict) and
                                             isinstance(z.get("name"), str) for z in data):
        raise DecodeError("pdns", "zones", "expected a list of zones with names",
                          code="wrong_type")
    return tuple(z["name"] for z in data)


def _replace(name: str, rdtype: str, ttl: int, recs: list[dict[str, Any]]) -> dict[str, Any]:
    if not recs:
        return {"name": name, "type": rdtype, "changetype": "DELETE"}
    return {"name": name, "type": rdtype, "ttl": ttl, "changetype": "REPLACE",
            "records": [{"content": r["content"], "disabled": bool(r.get("disabled"))}
                        for r in recs]}


class PdnsRegistrar:
    name = "pdns"

    def __init__(self, cfg: Config, hostname: str, *,
                 addresses: Callable[[Config], dict[str, str]] = network_addresses,
                 on_step: StepHook | None = None, settle: float = 0.1,
                 rejections: Rejections | None = None) -> None:
        """``on_step(step, rrset name)`` is awaited at ``"read"`` (between the read and the
        write) and ``"written"`` (between the write and the read back): a seam for tests
        that interleave registrars deterministically. ``settle`` is the wait before a
        read back, jittered."""
        self.cfg, self.hostname, self._addresses = cfg, hostname, addresses
        self.base = f"{cfg.dns.pdns_url.rstrip('/')}/api/v1/servers/{cfg.dns.pdns_server_id}"
        self.on_step, self.settle = on_step, settle
        self.rejections = rejections or Rejections()
        self._zones: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def ensure(self, present: bool) -> None:
        try:
            await self._ensure(present)
        except DecodeError as exc:  # an answer too large, too deep or of the wrong shape
            self.rejections.reject("pdns", exc)
            raise
        self.rejections.accepted_all("pdns")

    async def _ensure(self, present: bool) -> None:
        async with self._lock:
            key = await asyncio.to_thread(self._api_key)
            addrs = await asyncio.to_thread(self._addresses, self.cfg) if present else None
            recs = records.desired(self.cfg, self.hostname, addrs)
            timeout = aiohttp.ClientTimeout(total=self.cfg.dns.timeout)
            async with aiohttp.ClientSession(timeout=timeout,
                                             headers={"X-API-Key": key}) as session:
                api = _Api(session, self.base)
                problems: list[str] = []
                for rec in recs:
                    host_zone = await self._zone(api, rec.host)
                    srv_zone = await self._zone(api, rec.srv_name)
                    if present:
                        if await self._host(api, host_zone, rec, True, problems):
                            await self._srv(api, srv_zone, rec, True)
                    else:
                        await self._srv(api, srv_zone, rec, False)
                        await self._host(api, host_zone, rec, False, problems)
            if problems:
                raise UpstreamPermanentError("dns: " + "; ".join(problems), code="dns_foreign")

    def _api_key(self) -> str:
        path = self.cfg.dns.pdns_api_key_file
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise InputError(f"PowerDNS API key file {path}", "dns.pdns_api_key_file",
                             f"cannot read: {exc.strerror}", code="dns_key") from exc
        if not key:
            raise InputError(f"PowerDNS API key file {path}", "dns.pdns_api_key_file",
                             "is empty", code="dns_key")
        return key

    async def _zone(self, api: _Api, name: str) -> str:
        if name not in self._zones:
            zones = self.cfg.dns.zones or _zone_names(await api.call("GET", "/zones"))
            zone = records.zone_from_list(name, zones)
            if zone is None:
                where = "dns.zones" if self.cfg.dns.zones else f"PowerDNS at {self.base}"
                raise UpstreamPermanentError(f"dns: no zone of {where} contains {name}",
                                             code="dns_zone")
            self._zones[name] = zone
        return self._zones[name]

    async def _step(self, step: str, name: str) -> None:
        if self.on_step is not None:
            await self.on_step(step, name)

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(self.settle * random.uniform(0.5, 1.5) * attempt)

    async def _srv(self, api: _Api, zone: str, rec: NetRecords, present: bool) -> None:
        """Merge (or remove) this worker's entry in the shared SRV rrset."""
        want_key = _norm("SRV", rec.srv_data)
        for attempt in range(1, ATTEMPTS + 1):
            rrset = (await api.rrsets(zone)).get((rec.srv_name.lower(), "SRV"))
            have = _contents(rrset, "SRV")
            keep = {k: r for k, r in have.items() if not records.is_ours_srv(k, rec)}
            if present:
                keep[want_key] = {"content": rec.srv_data, "disabled": False}
            if set(keep) == set(have) and all(not r.get("disabled") for k, r in have.items()
                                              if records.is_ours_srv(k, rec)):
                return
            ttl = int(rrset["ttl"]) if rrset else rec.ttl  # the rrset's TTL is shared
            await self._step("read", rec.srv_name)
            if not await api.patch(zone, [_replace(rec.srv_name, "SRV", ttl,
                                                   list(keep.values()))]):
                await self._pause(attempt)
                continue
            log.info("dns: %s %s SRV %s (attempt %d)", "registered" if present else
                     "withdrew", rec.srv_name, rec.srv_data, attempt,
                     extra={"action": "dns-register" if present else "dns-withdraw",
                            "zone": zone})
            await self._step("written", rec.srv_name)
            await self._pause(1)
            after = _contents((await api.rrsets(zone)).get((rec.srv_name.lower(), "SRV")),
                              "SRV")
            gone = {k for k in have if records.is_ours_srv(k, rec)} - set(keep)
            if set(keep) <= set(after) and not gone & set(after):
                return
            await self._pause(attempt)
        raise UpstreamTemporaryError(f"dns: {rec.srv_name} SRV kept changing under "
                                     f"{ATTEMPTS} read-modify-write attempts; retrying next "
                                     "pass", code="dns_conflict")

    async def _host(self, api: _Api, zone: str, rec: NetRecords, present: bool,
                    problems: list[str]) -> bool:
        """This worker's A record and owner TXT record; False if the name is not ours."""
        owner = _norm("TXT", records.quote_txt(rec.owner))
        for attempt in range(1, ATTEMPTS + 1):
            rr = await api.rrsets(zone)
            a_rr, txt_rr = rr.get((rec.host.lower(), "A")), rr.get((rec.host.lower(), "TXT"))
            a, txt = _contents(a_rr, "A"), _contents(txt_rr, "TXT")
            own = records.ownership(rec, set(a), _txt_strings(txt))
            if own is RecordOwnership.FOREIGN:
                problems.append(f"{rec.host} (network {rec.net}) is owned by someone else "
                                f"(A {sorted(a)}, TXT {sorted(txt)}); left alone")
                return False
            other_txt = [r for k, r in txt.items() if k != owner]
            if present:
                assert rec.address is not None
                if (set(a) == {rec.address} and owner in txt and a_rr and txt_rr
                        and a_rr["ttl"] == rec.ttl and txt_rr["ttl"] == rec.ttl):
                    return True
                change = [
                    _replace(rec.host, "A", rec.ttl, [{"content": rec.address}]),
                    _replace(rec.host, "TXT", rec.ttl,
                             other_txt + [{"content": records.quote_txt(rec.owner)}])]
            else:
                if own is not RecordOwnership.OURS:
                    return True
                change = [_replace(rec.host, "A", rec.ttl, []),
                          _replace(rec.host, "TXT", int(txt_rr["ttl"]) if txt_rr else rec.ttl,
                                   other_txt)]
            await self._step("read", rec.host)
            if not await api.patch(zone, change):
                await self._pause(attempt)
                continue
            log.info("dns: %s %s A %s (%s, attempt %d)", "registered" if present else
                     "withdrew", rec.host, rec.address or "", own.value, attempt,
                     extra={"action": "dns-register" if present else "dns-withdraw",
                            "zone": zone})
            await self._step("written", rec.host)
            await self._pause(1)
            rr = await api.rrsets(zone)
            a2 = _contents(rr.get((rec.host.lower(), "A")), "A")
            txt2 = _contents(rr.get((rec.host.lower(), "TXT")), "TXT")
            others_kept = {_norm("TXT", r["content"]) for r in other_txt} <= set(txt2)
            if present and set(a2) == {rec.address} and owner in txt2 and others_kept:
                return True
            if not present and not a2 and owner not in txt2 and others_kept:
                return True
            await self._pause(attempt)
        raise UpstreamTemporaryError(f"dns: {rec.host} kept changing under {ATTEMPTS} "
                                     "read-modify-write attempts; retrying next pass",
                                     code="dns_conflict")
