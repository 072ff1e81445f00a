"""The rfc2136 registrar against a real Knot server (TSIG-signed updates on loopback).

Every check queries the server with dnspython; nothing trusts the registrar's word.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import dns.name
import dns.query
import dns.tsig
import dns.update
import pytest

from sbps.config import Config, DnsConfig, NodeConfig
from sbps.core.errors import UpstreamPermanentError, UpstreamTemporaryError
from sbps.publish.dns import make_registrar
from sbps.publish.dns.rfc2136 import Rfc2136Registrar
from tests.fixtures.dns import BASE, DOMAIN, KEY_NAME, SYSTEM, KnotServer, query

SRV_HSN = f"_sbps-hsn._tcp.{BASE}"
SRV_NMN = f"_sbps-nmn._tcp.{BASE}"


def host(nnn: str, net: str) -> str:
    return f"iscsi-server-id-{nnn}.{net}.{BASE}"


def worker(server: KnotServer, hostname: str, hsn: str, nmn: str, *,
           key_file: Path | None = None, timeout: float = 2.0) -> Rfc2136Registrar:
    cfg = dataclasses.replace(
        Config(),
        node=NodeConfig(hostname=hostname, system_name=SYSTEM, site_domain=DOMAIN),
        dns=DnsConfig(mode="rfc2136", server="127.0.0.1", port=server.port,
                      tsig_key_file=str(key_file or server.key_file), ttl=600,
                      hsn_address=hsn, nmn_address=nmn, timeout=timeout))
    registrar = make_registrar(cfg, hostname)
    assert isinstance(registrar, Rfc2136Registrar)
    return registrar


def by_hand(server: KnotServer, zone: str) -> dns.update.UpdateMessage:
    keyring = {dns.name.from_text(KEY_NAME): dns.tsig.Key(KEY_NAME, server.secret,
                                                          dns.tsig.HMAC_SHA256)}
    return dns.update.UpdateMessage(zone, keyring=keyring, keyname=KEY_NAME)


def send(server: KnotServer, msg: dns.update.UpdateMessage) -> None:
    r = dns.query.tcp(msg, "127.0.0.1", timeout=5, port=server.port)
    assert r.rcode() == 0


def snapshot(server: KnotServer) -> dict[str, set[str]]:
    names = [(SRV_HSN, "SRV"), (SRV_NMN, "SRV")] + [
        (host(n, net), t) for n in ("001", "002") for net in ("hsn", "nmn")
        for t in ("A", "TXT")]
    names += [(zone, "SOA") for zone in (BASE, f"hsn.{BASE}", f"nmn.{BASE}")]  # serials
    return {f"{name} {t}": query(server.port, name, t) for name, t in names}


async def test_two_workers_share_the_srv_rrset_and_withdraw_only_their_own(
        knot_server: KnotServer) -> None:
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    w2 = worker(knot_server, "ncn-w002", "10.1.0.2", "10.2.0.2")
    await w1.ensure(True)
    await w2.ensure(True)
    assert query(knot_server.port, SRV_HSN, "SRV") == {
        f"1 0 3260 {host('001', 'hsn')}", f"1 0 3260 {host('002', 'hsn')}"}
    assert query(knot_server.port, SRV_NMN, "SRV") == {
        f"1 0 3260 {host('001', 'nmn')}", f"1 0 3260 {host('002', 'nmn')}"}
    assert query(knot_server.port, host("001", "hsn"), "A") == {"10.1.0.1"}
    assert query(knot_server.port, host("002", "nmn"), "A") == {"10.2.0.2"}
    assert query(knot_server.port, host("001", "nmn"), "TXT") == {'"sbps-owner=ncn-w001"'}

    before = snapshot(knot_server)
    await w1.ensure(True)  # in sync: sends nothing, changes nothing
    assert snapshot(knot_server) == before

    await w1.ensure(False)
    assert query(knot_server.port, SRV_HSN, "SRV") == {f"1 0 3260 {host('002', 'hsn')}"}
    assert query(knot_server.port, SRV_NMN, "SRV") == {f"1 0 3260 {host('002', 'nmn')}"}
    assert query(knot_server.port, host("001", "hsn"), "A") == set()
    assert query(knot_server.port, host("001", "hsn"), "TXT") == set()
    assert query(knot_server.port, host("002", "hsn"), "A") == {"10.1.0.2"}
    await w1.ensure(False)  # withdrawing twice is harmless


async def test_records_deleted_by_hand_come_back(knot_server: KnotServer) -> None:
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    await w1.ensure(True)
    msg = by_hand(knot_server, f"hsn.{BASE}")
    msg.delete(host("001", "hsn"), "A")
    send(knot_server, msg)
    msg = by_hand(knot_server, BASE)
    msg.delete(SRV_NMN, "SRV")
    send(knot_server, msg)
    assert query(knot_server.port, host("001", "hsn"), "A") == set()
    await w1.ensure(True)
    assert query(knot_server.port, host("001", "hsn"), "A") == {"10.1.0.1"}
    assert query(knot_server.port, SRV_NMN, "SRV") == {f"1 0 3260 {host('001', 'nmn')}"}


async def test_a_name_owned_by_someone_else_is_left_alone(knot_server: KnotServer) -> None:
    msg = by_hand(knot_server, f"hsn.{BASE}")
    msg.add(host("001", "hsn"), 300, "A", "192.0.2.9")
    send(knot_server, msg)
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    with pytest.raises(UpstreamPermanentError, match="owned by someone else"):
        await w1.ensure(True)
    assert query(knot_server.port, host("001", "hsn"), "A") == {"192.0.2.9"}
    assert query(knot_server.port, host("001", "hsn"), "TXT") == set()
    assert query(knot_server.port, SRV_HSN, "SRV") == set()
    # The other network is registered all the same.
    assert query(knot_server.port, host("001", "nmn"), "A") == {"10.2.0.1"}
    with pytest.raises(UpstreamPermanentError):
        await w1.ensure(False)
    assert query(knot_server.port, host("001", "hsn"), "A") == {"192.0.2.9"}


async def test_an_unmarked_record_with_our_address_is_adopted(knot_server: KnotServer) -> None:
    msg = by_hand(knot_server, f"hsn.{BASE}")
    msg.add(host("001", "hsn"), 300, "A", "10.1.0.1")
    send(knot_server, msg)
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    await w1.ensure(True)
    assert query(knot_server.port, host("001", "hsn"), "TXT") == {'"sbps-owner=ncn-w001"'}
    await w1.ensure(False)
    assert query(knot_server.port, host("001", "hsn"), "A") == set()


async def test_a_wrong_tsig_key_is_a_clear_error_and_changes_nothing(
        knot_server: KnotServer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    wrong = base64.b64encode(b"not the key, 32 bytes long......").decode()
    key_file = tmp_path / "wrong.key"
    key_file.write_text(f"{KEY_NAME}:hmac-sha256:{wrong}\n")
    await worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1").ensure(True)
    bad = worker(knot_server, "ncn-w001", "10.1.0.7", "10.2.0.7", key_file=key_file)
    before = snapshot(knot_server)
    for present in (True, False):
        with pytest.raises(UpstreamPermanentError, match="TSIG key 'sbps-key'") as err:
            await bad.ensure(present)
        assert wrong not in str(err.value) and knot_server.secret not in str(err.value)
    assert wrong not in caplog.text
    assert snapshot(knot_server) == before
    assert query(knot_server.port, host("001", "hsn"), "A") == {"10.1.0.1"}


async def test_server_down_is_a_temporary_error_and_recovers(knot_server: KnotServer) -> None:
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1", timeout=1.0)
    await w1.ensure(True)
    knot_server.stop()
    with pytest.raises(UpstreamTemporaryError, match=f"127.0.0.1:{knot_server.port}"):
        await w1.ensure(True)
    knot_server.start()
    msg = by_hand(knot_server, BASE)
    msg.delete(SRV_HSN, "SRV")
    send(knot_server, msg)
    await w1.ensure(True)
    assert query(knot_server.port, SRV_HSN, "SRV") == {f"1 0 3260 {host('001', 'hsn')}"}


async def test_zones_from_configuration(knot_server: KnotServer) -> None:
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    w1.cfg = dataclasses.replace(w1.cfg, dns=dataclasses.replace(
        w1.cfg.dns, zones=(BASE.rstrip("."), f"hsn.{BASE}", f"nmn.{BASE}")))
    await w1.ensure(True)
    assert query(knot_server.port, host("001", "nmn"), "A") == {"10.2.0.1"}
    w1.cfg = dataclasses.replace(w1.cfg, dns=dataclasses.replace(w1.cfg.dns,
                                                                 zones=("other.test",)))
    w1._zones.clear()
    with pytest.raises(UpstreamPermanentError, match="no zone in dns.zones"):
        await w1.ensure(True)


async def test_a_name_taken_between_read_and_update_is_not_overwritten(
        knot_server: KnotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone claims our host name after the registrar read it: the update's prerequisite
    fails, the registrar reads again, finds the name foreign, and leaves it alone."""
    w1 = worker(knot_server, "ncn-w001", "10.1.0.1", "10.2.0.1")
    diff = w1._diff
    calls = []

    def diff_then_race(*args: object, **kwargs: object) -> object:
        out = diff(*args, **kwargs)  # type: ignore[arg-type]
        if not calls:
            msg = by_hand(knot_server, f"hsn.{BASE}")
            msg.add(host("001", "hsn"), 300, "A", "192.0.2.9")
            msg.add(host("001", "hsn"), 300, "TXT", '"sbps-owner=intruder"')
            send(knot_server, msg)
        calls.append(1)
        return out

    monkeypatch.setattr(w1, "_diff", diff_then_race)
    with pytest.raises(UpstreamPermanentError, match="owned by someone else"):
        await w1.ensure(True)
    assert len(calls) >= 2
    assert query(knot_server.port, host("001", "hsn"), "A") == {"192.0.2.9"}
    assert query(knot_server.port, host("001", "hsn"), "TXT") == {'"sbps-owner=intruder"'}
    assert query(knot_server.port, SRV_HSN, "SRV") == set()
    assert query(knot_server.port, host("001", "nmn"), "A") == {"10.2.0.1"}
